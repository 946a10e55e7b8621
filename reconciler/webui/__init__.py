"""Open WebUI, converged to webui.yaml through its admin API: the client (api), what
its settings should be (plan), knowledge bases and presets (knowledge), the converge (sync).
"""
