"""The `lanai` command line: the entry point, which only registers the commands.

Commands build result objects; `views` renders them. Every read command takes --json.
Exit codes are documented in the README and in `reconciler.core.errors.ExitCode`.
Each command module imports `reconciler.cli.base`, never this module.
"""

from __future__ import annotations

from reconciler.cli import backup, models, setup, stack, trust, users
from reconciler.cli.base import root

# Importing a command module registers its commands on the root group.
COMMAND_MODULES = (stack, setup, models, backup, trust, users)

main = root
