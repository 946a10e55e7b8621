"""WebUISync's accounts and knowledge steps against a small in-memory stand-in of Open
WebUI's API (the real one is exercised in tests/e2e/test_webui.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired.webui_yaml import WebUIConfig
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered
from reconciler.webui.errors import WebUIError
from reconciler.webui.sync import NotReady, WebUIOutcome, WebUISync, service_url


class Api:
    """The calls WebUISync makes for accounts and knowledge, kept in dictionaries."""

    def __init__(self) -> None:
        self.accounts: list[dict[str, Any]] = []
        self.fail_add_user: str | None = None
        self.bases: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}  # every uploaded file
        self.links: dict[str, list[str]] = {}  # knowledge id -> file ids
        self.uploads = 0
        self.refuse_text: set[str] = set()  # hashes Open WebUI calls duplicate content

    def users(self) -> list[dict[str, Any]]:
        return [dict(u) for u in self.accounts]

    def add_user(self, name: str, email: str, password: str, role: str) -> None:
        if email == self.fail_add_user:
            raise WebUIError(f"Open WebUI would not add {email}.")
        self.accounts.append({"id": email, "email": email, "role": role})

    def knowledge_bases(self) -> list[dict[str, Any]]:
        return [dict(b) for b in self.bases.values()]

    def create_knowledge(self, name: str, description: str) -> dict[str, Any]:
        kb = {"id": f"kb{len(self.bases)}", "name": name, "description": description}
        self.bases[kb["id"]] = kb
        self.links[kb["id"]] = []
        return dict(kb)

    def knowledge_files(self, knowledge_id: str) -> list[dict[str, Any]]:
        return [self.files[f] for f in self.links[knowledge_id]]

    def upload_file(self, name: str, data: bytes, *, content_type: str,
                    metadata: dict[str, Any]) -> dict[str, Any]:
        self.uploads += 1
        base = name.rsplit("/", 1)[-1]  # as Open WebUI keeps it
        record = {"id": f"file{self.uploads}", "filename": base,
                  "meta": {"name": base, "file_hash": hashlib.sha256(data).hexdigest(),
                           "data": metadata}}
        self.files[record["id"]] = record
        return record

    def wait_processed(self, file_id: str) -> None:
        pass

    def add_file_to_knowledge(self, knowledge_id: str, file_id: str) -> None:
        digest = self.files[file_id]["meta"]["file_hash"]
        held = {self.files[f]["meta"]["file_hash"] for f in self.links[knowledge_id]}
        if digest in held | self.refuse_text:
            raise WebUIError("Open WebUI refused: 400: Duplicate content detected.")
        self.links[knowledge_id].append(file_id)

    def remove_file_from_knowledge(self, knowledge_id: str, file_id: str, *,
                                   delete_file: bool) -> None:
        self.links[knowledge_id].remove(file_id)
        if delete_file:
            self.files.pop(file_id)

    def delete_file(self, file_id: str) -> None:
        self.files.pop(file_id)
        for links in self.links.values():
            if file_id in links:
                links.remove(file_id)


@pytest.fixture
def sync(tmp_path: Path) -> WebUISync:
    settings = ServerSettings(home=tmp_path / "home", repo=None, branch=None,
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    passwords = iter(f"pw{i}" for i in range(10))
    return WebUISync(settings, client=None, password=lambda: next(passwords),  # type: ignore[arg-type]
                     progress=lambda _m: None)


def deployment(tmp_path: Path, docs: dict[str, str]) -> Rendered:
    root = tmp_path / "deployment"
    listed = []
    for path, text in docs.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
        listed.append([path, hashlib.sha256(text.encode()).hexdigest()])
    return Rendered(directory=root, commit="c" * 40, key="k", project="lanai",
                    compose_file="compose.yaml", services={}, documents={"Family": listed})


CONFIG = WebUIConfig.model_validate({"knowledge": [{"name": "Family", "files": ["docs/*"]}]})


def test_each_accounts_password_is_kept_before_the_next_is_made(sync: WebUISync) -> None:
    api = Api()
    api.fail_add_user = "b@home.arpa"
    config = WebUIConfig.model_validate({"users": [
        {"name": "A", "email": "a@home.arpa"}, {"name": "B", "email": "b@home.arpa"}]})
    with pytest.raises(WebUIError):
        sync._users(api, config, WebUIOutcome())  # type: ignore[arg-type]
    kept = json.loads(sync.passwords_file.read_text())
    assert kept["a@home.arpa"]["password"] == "pw0"
    assert sync.passwords_file.stat().st_mode & 0o777 == 0o600


def test_knowledge_follows_what_open_webui_holds_after_a_restore(
        sync: WebUISync, tmp_path: Path) -> None:
    api = Api()
    rendered = deployment(tmp_path, {"docs/a.md": "A\n", "docs/b.md": "B\n"})
    first = WebUIOutcome()
    sync._knowledge(api, rendered, CONFIG, first)  # type: ignore[arg-type]
    assert not first.errors and api.uploads == 2
    # A restore brings back Open WebUI's data from before: b.md is gone there, while lanai's
    # record still lists both files with ids Open WebUI no longer knows.
    api.links["kb0"] = [f for f in api.links["kb0"] if api.files[f]["filename"] == "a.md"]
    record = json.loads(sync.knowledge_file.read_text())
    record["knowledge"]["Family"]["files"]["docs/a.md"]["file_id"] = "gone"
    sync.knowledge_file.write_text(json.dumps(record))
    for _ in range(3):  # polls
        out = WebUIOutcome()
        sync._knowledge(api, rendered, CONFIG, out)  # type: ignore[arg-type]
        assert not out.errors
    assert api.uploads == 3  # b.md once; a.md, already there by content, never again
    assert sorted(api.files[f]["meta"]["data"]["lanai_path"] for f in api.links["kb0"]) == [
        "docs/a.md", "docs/b.md"]


def test_an_edit_replaces_the_file_also_one_uploaded_by_an_older_lanai(
        sync: WebUISync, tmp_path: Path) -> None:
    api = Api()
    sync._knowledge(api, deployment(tmp_path, {"docs/a.md": "A\n"}),  # type: ignore[arg-type]
                    CONFIG, WebUIOutcome())
    [old] = api.links["kb0"]
    del api.files[old]["meta"]["data"]  # as lanai before meta.data uploaded it
    out = WebUIOutcome()
    sync._knowledge(api, deployment(tmp_path, {"docs/a.md": "A, edited\n"}),  # type: ignore[arg-type]
                    CONFIG, out)
    assert [(a["kind"], a["result"]) for a in out.actions] == [("replace", "ok")]
    [new] = api.links["kb0"]
    assert new != old and old not in api.files


def test_a_refused_upload_leaves_no_file_behind_and_is_reported(
        sync: WebUISync, tmp_path: Path) -> None:
    api = Api()
    rendered = deployment(tmp_path, {"docs/a.md": "A\n"})
    api.refuse_text.add(hashlib.sha256(b"A\n").hexdigest())
    for _ in range(2):
        out = WebUIOutcome()
        sync._knowledge(api, rendered, CONFIG, out)  # type: ignore[arg-type]
        assert out.errors == ["knowledge Family: docs/a.md: Open WebUI refused: 400: "
                              "Duplicate content detected."]
    assert api.files == {}


def test_a_file_lanai_wrote_over_a_committed_one_is_never_uploaded(
        sync: WebUISync, tmp_path: Path) -> None:
    api = Api()
    rendered = deployment(tmp_path, {"docs/a.md": "A\n"})
    (rendered.directory / "docs" / "a.md").write_text("WEBUI_SECRET_KEY=s3cret\n")
    out = WebUIOutcome()
    sync._knowledge(api, rendered, CONFIG, out)  # type: ignore[arg-type]
    assert api.files == {} and "differs from the commit's file" in out.errors[0]


def test_a_symbolic_link_in_the_deployment_is_never_followed(
        sync: WebUISync, tmp_path: Path) -> None:
    api = Api()
    rendered = deployment(tmp_path, {"docs/a.md": "A\n"})
    secret = tmp_path / "secret"
    secret.write_text("A\n")  # even with the listed content
    (rendered.directory / "docs" / "a.md").unlink()
    (rendered.directory / "docs" / "a.md").symlink_to(secret)
    out = WebUIOutcome()
    sync._knowledge(api, rendered, CONFIG, out)  # type: ignore[arg-type]
    assert api.files == {} and "cannot read it" in out.errors[0]



class Container:
    name = "lanai-open-webui-1"

    def __init__(self, address: str) -> None:
        self.attrs = {"NetworkSettings": {"Networks": {"lanai": {"IPAddress": address}}}}


class Docker:
    """`client.containers.list` answering with the given running containers."""

    def __init__(self, *running: Container) -> None:
        self.containers = self
        self.running = list(running)

    def list(self, **_: object) -> list[Container]:
        return self.running


def test_open_webui_is_found_by_its_container_address() -> None:
    assert service_url(Docker(Container("172.19.0.3")),  # type: ignore[arg-type]
                       "lanai", "open-webui", 8080) == "http://172.19.0.3:8080"
    with pytest.raises(NotReady, match=r"^open-webui is not running; see `lanai status`$"):
        service_url(Docker(), "lanai", "open-webui", 8080)  # type: ignore[arg-type]
    with pytest.raises(NotReady, match=r"^the open-webui container has no IP address$"):
        service_url(Docker(Container("")), "lanai", "open-webui", 8080)  # type: ignore[arg-type]
