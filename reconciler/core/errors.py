"""Errors a user can cause, each with one sentence (cause and fix) and an exit code.

The exit codes are part of the CLI's contract and are documented in the README.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    CHANGES = 1  # plan/drift: differences found (like diff(1))
    INVALID = 2  # the desired state or the command line is invalid
    APPLY_FAILED = 3  # a commit failed to converge; the last good state keeps running
    LOCKED = 4  # another reconcile holds the lock
    DOCKER = 5  # the Docker engine or `docker compose` cannot be used
    SOURCE = 6  # the git source cannot be fetched
    SUSPENDED = 7  # reconciliation is suspended (`lanai resume`)
    SECRETS = 8  # a secret named in the state is missing, or the secrets file is unsafe
    NOT_SET_UP = 9  # this machine has no lanai configuration yet
    BACKUP = 10  # a backup or restore failed (disk full, data unreadable); nothing was changed


class LanaiError(Exception):
    """A failure with a one-sentence message that names the cause and the fix.

    `deterministic` says whether trying the same input again can succeed: a
    deterministic failure waits for a new commit or an explicit retry.
    """

    exit_code: ExitCode = ExitCode.APPLY_FAILED
    deterministic: bool = True

    def __init__(self, message: str, *, exit_code: ExitCode | None = None,
                 deterministic: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        if deterministic is not None:
            self.deterministic = deterministic

    def __str__(self) -> str:
        return self.message


class StateError(LanaiError):
    """The desired state (a file in the state repo) is invalid."""

    exit_code = ExitCode.INVALID


class SecretsError(LanaiError):
    exit_code = ExitCode.SECRETS


class DockerError(LanaiError):
    exit_code = ExitCode.DOCKER
    deterministic = False


class SourceError(LanaiError):
    exit_code = ExitCode.SOURCE
    deterministic = False


class ApplyError(LanaiError):
    exit_code = ExitCode.APPLY_FAILED


class LockHeld(LanaiError):
    exit_code = ExitCode.LOCKED
    deterministic = False


class NotSetUp(LanaiError):
    exit_code = ExitCode.NOT_SET_UP


class BackupError(LanaiError):
    """A backup could not be taken or verified, or a restore could not be done."""

    exit_code = ExitCode.BACKUP


class ServiceError(Exception):
    """A service of the stack (Ollama, Open WebUI) refused or failed a request.

    ``message`` says why in one sentence; ``status`` is the HTTP status when the
    service answered with one; ``detail`` is the service's own error text, if any.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return self.message
