"""Swarm mode: several servers as one Docker Swarm.

`stackfile` turns compose's normalized project into the v3 stack file `docker stack
deploy` reads, with a note for each Compose feature Swarm lacks (pure: no engine).
"""
