"""The server's secrets file: NAME=value lines, readable by root only.

Values never leave this module except into env files (mode 0600) that compose
passes to containers; nothing here logs or prints a value.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import SecretsError
from .schema import SECRET_NAME


def read_secrets(path: Path) -> dict[str, str]:
    """All secrets in `path`; a missing file is empty; an unsafe file is refused."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(
            f"the secrets file {path} can be read by other users; run `chmod 600 {path}` "
            "(and rotate any secret that may have leaked).")
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not sep or not SECRET_NAME.match(name):
            raise SecretsError(
                f"line {number} of {path} is not NAME=value; fix that line "
                "(names use A-Z, 0-9 and _).")
        values[name] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def require(secrets: dict[str, str], names: Iterable[str], path: Path) -> None:
    missing = sorted(set(names) - set(secrets))
    if missing:
        listed = ", ".join(missing)
        raise SecretsError(
            f"secret {listed} is named in lanai.yaml but missing from {path}; add it with "
            f"`lanai secrets set {missing[0]}` on the server.")


def write_secret(path: Path, name: str, value: str) -> None:
    """Add or replace one secret, atomically, keeping the file root-only."""
    if not SECRET_NAME.match(name):
        raise SecretsError(f"{name!r} is not a valid secret name; use A-Z, 0-9 and _.")
    if "\n" in value or "\r" in value:
        raise SecretsError("a secret value must be one line; encode multi-line values "
                           "(for example with base64).")
    current = read_secrets(path)
    current[name] = value
    write_env_file(path, {key: _quote(val) for key, val in current.items()})


def _quote(value: str) -> str:
    """Quote a value only where reading it back would otherwise change it."""
    if value == value.strip() and value[:1] not in ("'", '"'):
        return value
    return f'"{value}"' if "'" in value else f"'{value}'"


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write NAME=value lines with mode 0600 from the first byte (no window of exposure).

    Values are written as they are; compose reads these files with `format: raw`.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for name in sorted(values):
                handle.write(f"{name}={values[name]}\n")
            # On disk before the rename, and the rename itself after: a crash then
            # leaves the old file or the new one, never an empty one.
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
