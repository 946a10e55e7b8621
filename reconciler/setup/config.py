"""Step 5: the server config (/etc/lanai/server.yaml, no secrets) and the secrets file.

Secret values are generated here or read from a file; they never pass through argv,
output or the log."""

from __future__ import annotations

import secrets as token
from dataclasses import dataclass
from pathlib import Path

import yaml

from reconciler.core.errors import LanaiError
from reconciler.core.files import write_atomic
from reconciler.server.secrets import BadLine, read_secrets, secret_lines, write_secret
from reconciler.setup.base import SetupError, SetupPaths, join, ok, warn, would

# Generated once into the secrets file; desired-state/lanai.yaml names them.
GENERATED_SECRETS = ("WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD")
HEADER = ("# lanai's server config, written by bootstrap.sh. No secrets here: they live in\n"
          "# secrets_file (root-only). Keys: home, repo, branch, secrets_file; each can be\n"
          "# overridden by LANAI_HOME, LANAI_REPO, LANAI_BRANCH, LANAI_SECRETS_FILE.\n")


@dataclass(frozen=True)
class Wanted:
    """What bootstrap was asked for: --state-repo URL and --branch NAME (empty: not given)."""

    state_repo_url: str = ""
    branch: str = ""

    def repo(self, paths: SetupPaths) -> str:
        """The repo this server follows: --state-repo URL, or the local bare repo."""
        return self.state_repo_url or str(paths.state_repo)


def yaml_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def new_config_text(paths: SetupPaths, wanted: Wanted) -> str:
    lines = [f"home: {yaml_quote(str(paths.home))}",
             f"repo: {yaml_quote(wanted.repo(paths))}"]
    if wanted.branch:
        lines.append(f"branch: {yaml_quote(wanted.branch)}")
    lines.append(f"secrets_file: {yaml_quote(str(paths.secrets_file))}")
    return HEADER + "".join(line + "\n" for line in lines)


def updated_config_text(text: str, repo: str, force_repo: bool, branch: str
                        ) -> tuple[str | None, list[str]]:
    """Set repo (when forced or none is set) and branch (when given), keeping everything
    else and the comment lines; (None, []) when nothing changes."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    changed = []
    if (force_repo or not data.get("repo")) and data.get("repo") != repo:
        data["repo"] = repo
        changed.append("repo")
    if branch and data.get("branch") != branch:
        data["branch"] = branch
        changed.append("branch")
    if not changed:
        return None, []
    head = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    return head + yaml.safe_dump(data, default_flow_style=False, sort_keys=False), changed


def step_config(paths: SetupPaths, wanted: Wanted, dry_run: bool) -> None:
    config = paths.config
    if not config.exists():
        if dry_run:
            would(f"config: would write {config} (repo: {wanted.repo(paths)}, home: "
                  f"{paths.home}, secrets_file: {paths.secrets_file})")
            return
        try:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.parent.chmod(0o755)  # lanai reads the config as any user; secrets are 0600
            write_atomic(config, new_config_text(paths, wanted), mode=0o644)
        except OSError as exc:
            raise SetupError(f"could not write {config} ({exc.strerror}); check that "
                             f"{config.parent} is writable and run again.") from exc
        ok(f"config: wrote {config}")
        return
    if dry_run:
        if wanted.state_repo_url or wanted.branch:
            would(f"config: would set repo/branch in {config} if they differ")
        else:
            ok(f"config: {config} already set up (kept as it is)")
        return
    try:
        text, changed = updated_config_text(config.read_text(encoding="utf-8"),
                                            wanted.repo(paths), bool(wanted.state_repo_url),
                                            wanted.branch)
        if text is not None:
            write_atomic(config, text, mode=0o644)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SetupError(f"{config} exists but could not be read as YAML; fix it (or move "
                         "it away) and run again.") from exc
    if changed:
        ok(f"config: set {' '.join(changed)} in {config}")
    else:
        ok(f"config: {config} already set up")


def parse_secrets_file(text: str) -> dict[str, str]:
    """NAME=value lines (comments, `export ` and one pair of quotes allowed), each with a
    value: the server's own parser (server.secrets), stricter about empty values."""
    given: dict[str, str] = {}
    try:
        for number, name, value in secret_lines(text):
            if not value:
                raise BadLine(number)
            given[name] = value
    except BadLine as exc:
        # The line itself is never shown: it may hold a value.
        raise ValueError(f"line {exc.number} is not NAME=value (names use A-Z, 0-9 and _)") \
            from None
    return given


def step_secrets(paths: SetupPaths, secrets_in: Path | None, dry_run: bool) -> None:
    target = paths.secrets_file
    if dry_run:
        if target.exists():
            ok(f"secrets: {target} exists (values are kept; a missing "
               f"{join(GENERATED_SECRETS)} would be generated)")
        else:
            would(f"secrets: would create {target} (mode 0600) with generated "
                  f"{join(GENERATED_SECRETS)}")
        if secrets_in:
            would(f"secrets: would add the secrets in {secrets_in} that differ "
                  "(names only are shown)")
        return
    try:
        current = read_secrets(target)
    except (LanaiError, OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"cannot read {target}: {_reason(exc)}") from exc
    changed = []
    for name in GENERATED_SECRETS:
        if name not in current:
            _write(target, name, token.token_urlsafe(32), f"could not write {name} to {target}")
            changed.append(f"generated {name}")
    if secrets_in:
        if secrets_in.stat().st_mode & 0o077:
            warn(f"{secrets_in} can be read by other users; its values are now on this "
                 f"server in {target}, so delete {secrets_in} (or chmod 600 it).")
        try:
            given = parse_secrets_file(secrets_in.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SetupError(f"cannot use --secrets-file {secrets_in}: {_reason(exc)}; fix "
                             "the file (NAME=value lines) and run again.") from exc
        for name in sorted(given):
            if current.get(name) != given[name]:
                _write(target, name, given[name], f"could not set {name} from {secrets_in}")
                changed.append(f"set {name}")
    if changed:
        ok(f"secrets: {join(changed)} in {target} (mode 0600)")
    else:
        ok(f"secrets: {target} already set up")


def _write(target: Path, name: str, value: str, what: str) -> None:
    try:
        write_secret(target, name, value)
    except (LanaiError, OSError) as exc:
        raise SetupError(f"{what}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LanaiError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
