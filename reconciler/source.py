"""The git source: a local bare mirror of the state repo, fetched with gitpython.

The remote may be a path to a bare repo on this server (seeded by bootstrap,
poked by its post-receive hook) or any URL git can fetch.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path

import git

from .errors import SourceError

FETCH_TIMEOUT_S = 60
# No prompts: a daemon must fail with a message, not wait for a password forever.
SSH_NO_PROMPT = "ssh -o BatchMode=yes"


def ssh_command(deploy_key: Path | None) -> str:
    """How git reaches an SSH remote: with the server's read-only deploy key when it has
    one (the git host's key is trusted on first use into a known_hosts beside it)."""
    if deploy_key is None or not deploy_key.is_file():
        return SSH_NO_PROMPT
    known_hosts = deploy_key.with_name("known_hosts")
    return (f"{SSH_NO_PROMPT} -i {shlex.quote(str(deploy_key))} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))} "
            "-o StrictHostKeyChecking=accept-new")


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    subject: str
    author: str
    date: str  # ISO 8601

    @property
    def short(self) -> str:
        return self.sha[:12]


class GitSource:
    def __init__(self, url: str, clone_dir: Path, deploy_key: Path | None = None) -> None:
        self.url = url
        self.clone_dir = clone_dir
        self.env = {"GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": ssh_command(deploy_key)}
        self._repo: git.Repo | None = None

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            if (self.clone_dir / "HEAD").exists():
                self._repo = git.Repo(self.clone_dir)
            else:
                self.clone_dir.mkdir(parents=True, exist_ok=True)
                self._repo = git.Repo.init(self.clone_dir, bare=True)
            names = [remote.name for remote in self._repo.remotes]
            if "origin" not in names:
                self._repo.create_remote("origin", self.url)
            elif self._repo.remotes.origin.url != self.url:
                self._repo.remotes.origin.set_url(self.url)
        return self._repo

    def fetch(self) -> None:
        try:
            with self.repo.git.custom_environment(**self.env):
                self.repo.git.fetch("origin", "+refs/heads/*:refs/remotes/origin/*",
                                    "--prune", "--quiet", kill_after_timeout=FETCH_TIMEOUT_S)
        except git.GitCommandError as exc:
            reason = git_reason(exc.stderr or "") or str(exc)
            raise SourceError(
                f"cannot fetch the state repo {self.url} ({reason}); the stack keeps running "
                "as it is; check the URL, the network and the deploy key.") from None

    def branch_head(self, branch: str) -> str:
        ref = f"refs/remotes/origin/{branch}"
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except git.GitCommandError:
            raise SourceError(
                f"branch {branch!r} does not exist in the state repo {self.url}; push it, or "
                "name an existing branch in lanai.yaml (source.branch).",
                deterministic=True) from None

    def resolve(self, ref: str) -> str:
        for candidate in (f"refs/remotes/origin/{ref}", ref):
            try:
                return self.repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}")
            except git.GitCommandError:
                continue
        raise SourceError(f"{ref!r} is neither a branch nor a commit of the state repo; "
                          "name one that exists (git log shows them).", deterministic=True)

    def tree(self, commit: str) -> str | None:
        """The id of `commit`'s tree (equal trees: the same files); None if unknown here."""
        try:
            return self.repo.commit(commit).tree.hexsha
        except (ValueError, git.BadName):
            return None

    def read_file(self, commit: str, path: str) -> str | None:
        try:
            return self.repo.git.show(f"{commit}:{path}")
        except git.GitCommandError:
            return None

    def info(self, commit: str) -> CommitInfo:
        c = self.repo.commit(commit)
        return CommitInfo(sha=c.hexsha, subject=c.summary if isinstance(c.summary, str) else
                          c.summary.decode(), author=str(c.author),
                          date=c.committed_datetime.isoformat())

    def export(self, commit: str, dest: Path) -> None:
        """Write the tree of `commit` into `dest` (which must not exist yet)."""
        buffer = io.BytesIO()
        self.repo.archive(buffer, treeish=commit, format="tar")
        buffer.seek(0)
        dest.mkdir(parents=True)
        with tarfile.open(fileobj=buffer) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4; Debian 12 has 3.11.2
                tar.extractall(dest, filter="data")
            else:  # git archive of our own mirror: no absolute paths or device files
                tar.extractall(dest)


def git_reason(stderr: str) -> str:
    """git's own first 'fatal:' or 'error:' line; its advice lines that follow are noise."""
    lines = [line.strip().removeprefix("stderr:").strip(" '") for line in stderr.splitlines()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return next((line for line in lines if line), "")
