"""`python -m reconciler` is the `lanai` command."""

from reconciler.cli.main import main

main(prog_name="lanai")
