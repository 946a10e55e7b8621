"""What this server keeps: settings (server.yaml), secrets, the reconcile lock, the
record (state and history), what a running reconcile is doing (working), and the GPU
as nvidia-smi reports it.
"""
