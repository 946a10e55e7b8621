"""The git source: a local bare mirror of the state repo, fetched with gitpython.

The remote may be a path to a bare repo on this server (seeded by bootstrap,
poked by its post-receive hook) or any URL git can fetch.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import git

from reconciler.core.errors import SourceError
from reconciler.desired import bounded, safe_tree

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
        """A file of `commit`, or None when it is missing or over bounded's size limit (it
        is then reported when the commit is loaded)."""
        try:
            if int(self.repo.git.cat_file("-s", f"{commit}:{path}")) > bounded.MAX_FILE_BYTES:
                return None
            return self.repo.git.show(f"{commit}:{path}")
        except (git.GitCommandError, ValueError):
            return None

    def info(self, commit: str) -> CommitInfo:
        c = self.repo.commit(commit)
        return CommitInfo(sha=c.hexsha, subject=c.summary if isinstance(c.summary, str) else
                          c.summary.decode(), author=str(c.author),
                          date=c.committed_datetime.isoformat())

    def export(self, commit: str, dest: Path) -> None:
        """Write the tree of `commit` into `dest` (which must not exist yet), streamed and
        checked by safe_tree: nothing in it leads outside `dest`, and it is not too big."""
        safe_tree.check_listing(self._sizes(commit))
        dest.mkdir(parents=True)
        try:
            self._extract(commit, dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # no half-unpacked tree left behind
            raise

    def _extract(self, commit: str, dest: Path) -> None:
        argv = ["git", f"--git-dir={self.repo.git_dir}", "archive", "--format=tar", commit]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            unreadable = False
            try:
                safe_tree.extract(proc.stdout, dest)
                proc.stdout.read()  # the end-of-archive padding, so git exits by itself
            except tarfile.TarError:  # git failed before writing a whole archive
                unreadable = True
                proc.stdout.read()
            except BaseException:
                proc.kill()
                raise
            error = proc.stderr.read().decode(errors="replace")
        if proc.returncode != 0 or unreadable:
            raise SourceError(f"cannot read commit {commit[:12]} from the local mirror "
                              f"({git_reason(error) or 'git archive failed'}); lanai fetches "
                              "it again on the next poll.")

    def _sizes(self, commit: str) -> Iterator[int]:
        """The size of each file of `commit`'s tree, read as git lists them (a tree too big
        to accept is refused after its first entries, not listed whole)."""
        argv = ["git", f"--git-dir={self.repo.git_dir}", "ls-tree", "-r", "-z", "--long",
                commit]
        with subprocess.Popen(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            try:
                pending = b""
                while chunk := proc.stdout.read(65536):
                    *entries, pending = (pending + chunk).split(b"\0")
                    for entry in entries:
                        # "<mode> <type> <object> <size>\t<path>"; size is "-" for a submodule
                        size = entry.split(b"\t", 1)[0].split()[-1]
                        yield int(size) if size.isdigit() else 0
            finally:
                proc.kill()


def git_reason(stderr: str) -> str:
    """git's own first 'fatal:' or 'error:' line; its advice lines that follow are noise."""
    lines = [line.strip().removeprefix("stderr:").strip(" '") for line in stderr.splitlines()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return next((line for line in lines if line), "")
