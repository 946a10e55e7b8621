"""`python -m reconciler` is the `lanai` command."""

from .cli import main

main(prog_name="lanai")
