"""Ollama's models, converged to models.yaml: the client (ollama), the VRAM fit
(memory, fit, plan), models.lock, what the server remembers (state), the converge
(sync) and the daemon's pull worker (pulls).
"""
