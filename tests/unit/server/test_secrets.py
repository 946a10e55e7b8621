"""The server's secrets file: parsing, permissions, atomic root-only writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode, SecretsError
from reconciler.server.secrets import read_secrets, require, write_env_file, write_secret


def secrets_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_secrets(tmp_path / "nope.env") == {}


def test_parsing_quotes_comments_and_export(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, (
        "# written by bootstrap\n"
        "\n"
        "WEBUI_SECRET_KEY=abc123\n"
        "   # an indented comment\n"
        "export OPENAI_API_KEY=sk-xyz\n"
        "DOUBLE=\"with spaces\"\n"
        "SINGLE='it is'\n"
        "EQUALS=a=b=c\n"
        "HASH=abc#def\n"
        "  PADDED  =  value  \n"
        "EMPTY=\n"
        "LONE=\"\n"))
    assert read_secrets(path) == {
        "WEBUI_SECRET_KEY": "abc123",
        "OPENAI_API_KEY": "sk-xyz",
        "DOUBLE": "with spaces",
        "SINGLE": "it is",
        "EQUALS": "a=b=c",
        "HASH": "abc#def",
        "PADDED": "value",
        "EMPTY": "",
        "LONE": '"',
    }


@pytest.mark.parametrize("line", ["just-a-wordVALUE42", "lower_case=VALUE42", "1ABC=VALUE42",
                                  "BAD-NAME=VALUE42", "=VALUE42"], ids=lambda _: "case")
def test_bad_line_is_refused_with_its_number(tmp_path: Path, line: str) -> None:
    path = secrets_file(tmp_path, f"# header\nGOOD=1\n{line}\n")
    with pytest.raises(SecretsError) as info:
        read_secrets(path)
    assert str(info.value) == (f"line 3 of {path} is not NAME=value; fix that line "
                               "(names use A-Z, 0-9 and _).")
    assert "VALUE42" not in str(info.value)  # the line may hold a secret: never echo it


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o601])
def test_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = secrets_file(tmp_path, "A=1\n", mode)
    with pytest.raises(SecretsError) as info:
        read_secrets(path)
    assert f"run `chmod 600 {path}`" in str(info.value)
    assert info.value.exit_code == ExitCode.SECRETS


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_file_is_read(tmp_path: Path, mode: int) -> None:
    assert read_secrets(secrets_file(tmp_path, "A=1\n", mode)) == {"A": "1"}


def test_require_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    require({"A": "1"}, ["A"], path)
    with pytest.raises(SecretsError) as info:
        require({"A": "1"}, ["C", "A", "B"], path)
    assert str(info.value) == (
        f"secret B, C is named in lanai.yaml but missing from {path}; add it with "
        "`lanai secrets set B` on the server.")


def test_write_secret_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "lanai" / "secrets.env"
    write_secret(path, "WEBUI_SECRET_KEY", "abc")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == "WEBUI_SECRET_KEY=abc\n"


def test_write_secret_adds_and_replaces_keeping_the_others(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "# comment\nB=2\nA=1\n")
    write_secret(path, "A", "one")
    write_secret(path, "C", "3")
    assert read_secrets(path) == {"A": "one", "B": "2", "C": "3"}
    assert path.read_text() == "A=one\nB=2\nC=3\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_secret_is_atomic(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "A=1\n")
    before = path.stat().st_ino
    write_secret(path, "B", "2")
    assert path.stat().st_ino != before  # a new file renamed into place, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.env"]  # no temp left


def test_write_secret_refuses_an_unsafe_existing_file(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "A=1\n", 0o644)
    with pytest.raises(SecretsError):
        write_secret(path, "B", "2")
    assert path.read_text() == "A=1\n"


@pytest.mark.parametrize("name", ["lower", "WITH-DASH", "1LEADING", "", "A B", "A=B"])
def test_write_secret_rejects_bad_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / "secrets.env"
    with pytest.raises(SecretsError, match="is not a valid secret name"):
        write_secret(path, name, "x")
    assert not path.exists()


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "trailing\n"])
def test_write_secret_rejects_multi_line_values(tmp_path: Path, value: str) -> None:
    path = tmp_path / "secrets.env"
    with pytest.raises(SecretsError, match="must be one line"):
        write_secret(path, "A", value)
    assert not path.exists()


def test_write_env_file_removes_its_temp_file_on_failure(tmp_path: Path) -> None:
    class Boom(str):
        def __str__(self) -> str:
            raise RuntimeError("boom")

        def __format__(self, spec: str) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_env_file(tmp_path / "x.env", {"A": Boom("v")})
    assert list(tmp_path.iterdir()) == []


def test_written_file_is_private_from_the_first_byte(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_fdopen = os.fdopen

    def spy(fd: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", spy)
    write_env_file(tmp_path / "x.env", {"A": "1"})
    assert seen == [0o600]


@pytest.mark.parametrize("value", ['"quoted"', " padded ", "'x'"])
def test_write_then_read_round_trips(tmp_path: Path, value: str) -> None:
    path = tmp_path / "secrets.env"
    write_secret(path, "A", value)
    assert read_secrets(path) == {"A": value}


def test_the_file_is_on_disk_before_its_rename_and_the_rename_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order of the system calls: fsync(file with the new values), rename, fsync(dir)."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        content = Path(target).read_text() if Path(target).is_file() else "<dir>"
        calls.append(("fsync", f"{Path(target).name}:{content}"))
        real_fsync(fd)

    def replace(src: str, dst: Path) -> None:
        calls.append(("rename", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "secrets.env"
    write_secret(path, "TOKEN", "s3cret")
    assert [c[0] for c in calls] == ["fsync", "rename", "fsync"], calls
    assert calls[0][1].startswith(".secrets.env.") and calls[0][1].endswith(":TOKEN=s3cret\n")
    assert calls[2][1] == f"{tmp_path.name}:<dir>"
