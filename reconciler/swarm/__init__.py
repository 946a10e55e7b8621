"""Swarm mode: several servers as one Docker Swarm.

`stackfile` turns compose's normalized project into the v3 stack file `docker stack
deploy` reads, with a note for each Compose feature Swarm lacks (pure: no engine).
`facts` reads the nodes, the stack's services and their tasks from the manager's Engine
API; `plan` compares them with the stack file (up/down by lanai's rule, drift, staged
deploys, node labels; pure); `cli` builds the docker commands that apply it.
"""
