"""The compose stack: render a commit into a project directory, read the live facts,
plan, apply through `docker compose`, and judge health.

compose builds every argv; facts observes through the Docker SDK; plan is pure; apply
is the only place with side effects; health is Argo CD's two facts (sync and health);
gpu_health and readiness watch containers after the deploy; sync is the stack's part of
a reconcile (deploy or roll back, check and heal), with a hook for the data around it.
"""
