"""The server's secrets file: NAME=value lines, readable by root only.

Values never leave this module except into env files (mode 0600) that compose
passes to containers; nothing here logs or prints a value.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from reconciler.core.errors import SecretsError
from reconciler.core.files import write_atomic
from reconciler.desired.lanai_yaml import SECRET_NAME


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
    try:
        return dict((name, value) for _, name, value
                    in secret_lines(path.read_text(encoding="utf-8")))
    except BadLine as exc:
        raise SecretsError(
            f"line {exc.number} of {path} is not NAME=value; fix that line "
            "(names use A-Z, 0-9 and _).") from None


class BadLine(ValueError):
    """A line that is not NAME=value; only its number is kept (the line may hold a value)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"line {number} is not NAME=value")
        self.number = number


def secret_lines(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, name, value) of NAME=value lines, in order; comments, blank lines,
    `export ` and one pair of quotes around the value are allowed. Raises BadLine when a
    line is reached that is not one."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not sep or not SECRET_NAME.match(name):
            raise BadLine(number)
        yield number, name, _unquote(value.strip())


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


def compose_env_value(name: str, value: str) -> str:
    """`value` quoted so that Compose's env_file parser gives back exactly `value`.

    Compose reads a single-quoted value literally (no `$` interpolation, no `#` comment, no
    trimming) except that `\\'` would end it early; a double-quoted value unescapes `\\`,
    `\\"` and `\\$` and nothing else we write. Both were checked against the real Compose
    2.20.2 to 2.40.3 (tests/compat). A line break cannot be written on one line and older
    Compose reads none, so it is refused.
    """
    if any(char in value for char in "\n\r\0"):
        raise SecretsError(
            f"secret {name} contains a line break, which Compose's env files cannot carry "
            f"on every supported version; store it encoded (for example base64) with "
            f"`lanai secrets set {name}`.")
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def write_compose_env_file(path: Path, values: dict[str, str]) -> None:
    """A service's env file for Compose's plain `env_file:` (every Compose lanai supports
    reads it; the long syntax with `format: raw` needs Compose 2.30)."""
    write_env_file(path, {name: compose_env_value(name, value)
                          for name, value in values.items()})


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write NAME=value lines with mode 0600 from the first byte (no window of exposure).

    Values are written as they are: the caller quotes them for whoever reads the file.
    """
    write_atomic(path, "".join(f"{name}={values[name]}\n" for name in sorted(values)),
                 mode=0o600, dir_mode=0o700)
