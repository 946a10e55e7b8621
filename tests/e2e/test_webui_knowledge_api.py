"""reconciler.webui.api's documents, knowledge bases and presets against a real Open WebUI 0.12.4.

One Open WebUI container and the Ollama API double (the local ollama/ollama:0.24.0
image, tests/ollama_double) on a network of their own, with embeddings through Ollama
as lanai configures them: the double answers /api/embed with deterministic vectors
for nomic-embed-text:v1.5 and chats with phi3, both pulled before Open WebUI starts.
The tests run in order and build on each other: documents, a knowledge base, a
preset on it, then what a family member (a `user` account) sees and gets. Nothing
here uses lanai's reconciler.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from reconciler.webui.api import WebUI
from reconciler.webui.errors import WebUIError
from reconciler.webui.forms import PUBLIC_READ, is_public, preset_form

from .harness import ModelRegistry, free_port, wait_for

WEBUI_IMAGE = "ghcr.io/open-webui/open-webui:v0.12.4"
OLLAMA_IMAGE = "ollama/ollama:0.24.0"
ADMIN_EMAIL = "admin@lanai.home.arpa"
ADMIN_PASSWORD = "e2e-knowledge-admin-5c1d"
KAI = ("Kai", "kai@lanai.home.arpa", "kai-one-time-pw-2")
EMBEDDING = "nomic-embed-text:v1.5"
PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"
DOCS = {
    "pasta.md": b"# Pasta\n\nBoil plenty of salted water, then cook the pasta until al dente.\n",
    "soup.md": b"# Lentil soup\n\nSimmer red lentils with onion, carrot and cumin for 25 min.\n",
    "bread.md": b"# Bread\n\nMix flour, water, salt and yeast; let it rise overnight.\n",
}


class Live:
    def __init__(self, url: str, admin: WebUI) -> None:
        self.url, self.admin = url, admin
        self.state: dict[str, Any] = {}  # ids the tests pass on to the next ones

    def user(self) -> WebUI:
        client = WebUI(self.url)
        client.signin(KAI[1], KAI[2], admin=False)
        return client


@pytest.fixture(scope="module")
def live(docker_client: docker.DockerClient) -> Iterator[Live]:
    suffix = uuid.uuid4().hex[:8]
    network = docker_client.networks.create(f"lanai-e2e-knowledge-{suffix}")
    registry = ModelRegistry.current
    assert registry is not None
    registry.join(network)  # the double pulls from "registry.ollama.ai" over this network
    containers = []
    try:
        ollama_port, webui_port = free_port(), free_port()
        ollama_name = f"lanai-e2e-knowledge-ollama-{suffix}"
        containers.append(docker_client.containers.run(
            OLLAMA_IMAGE, detach=True, name=ollama_name, network=network.name,
            ports={"11434/tcp": ("127.0.0.1", ollama_port)}))
        ollama = f"http://127.0.0.1:{ollama_port}"
        wait_for(lambda: httpx.get(f"{ollama}/api/version").status_code == 200, 30,
                 "the Ollama double to answer")
        for model in (EMBEDDING, PHI3):
            pulled = httpx.post(f"{ollama}/api/pull", json={"model": model, "stream": False},
                                timeout=60)
            assert pulled.json() == {"status": "success"}, pulled.text
        # The double by its container name on the network, as compose's service name.
        inside = f"http://{ollama_name}:11434"
        webui = docker_client.containers.run(
            WEBUI_IMAGE, detach=True, name=f"lanai-e2e-knowledge-webui-{suffix}",
            network=network.name, ports={"8080/tcp": ("127.0.0.1", webui_port)},
            environment={
                "WEBUI_SECRET_KEY": "e2e-knowledge-secret",
                "WEBUI_ADMIN_EMAIL": ADMIN_EMAIL, "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "WEBUI_ADMIN_NAME": "Admin", "ENABLE_OPENAI_API": "false",
                "OLLAMA_BASE_URL": inside, "RAG_EMBEDDING_ENGINE": "ollama",
                "RAG_EMBEDDING_MODEL": EMBEDDING, "RAG_OLLAMA_BASE_URL": inside,
            })
        containers.append(webui)
        url = f"http://127.0.0.1:{webui_port}"
        admin = WebUI(url)

        def healthy() -> bool:
            webui.reload()
            if webui.status == "exited":
                raise AssertionError("Open WebUI exited:\n" + webui.logs(tail=40).decode())
            return admin.health()

        wait_for(healthy, 120, "Open WebUI to answer /health", interval=0.5)
        admin.signin(ADMIN_EMAIL, ADMIN_PASSWORD)
        yield Live(url, admin)
        admin.close()
    finally:
        for container in containers:
            container.remove(force=True, v=True)
        registry.leave(network)
        network.remove()


def chat_as(live: Live, user: WebUI, model: str) -> httpx.Response:
    """One chat turn as the chat page sends it, not streamed (main.chat_completion)."""
    return httpx.post(f"{live.url}/api/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {user.token}"},
                      json={"model": model, "stream": False,
                            "messages": [{"role": "user", "content": "How long for lentils?"}]})


def test_documents_are_uploaded_and_processed(live: Live) -> None:
    files = {}
    for name, data in DOCS.items():
        record = live.admin.upload_file(name, data, content_type="text/markdown")
        assert record["data"] == {"status": "pending"}  # processed after the answer
        assert record["meta"]["file_hash"] == hashlib.sha256(data).hexdigest()
        files[name] = record["id"]
    for file_id in files.values():
        live.admin.wait_processed(file_id, timeout=60)
        assert live.admin.file_status(file_id) == "completed"
    live.state["files"] = files


def test_a_knowledge_base_holds_them(live: Live) -> None:
    files = live.state["files"]
    kb = live.admin.create_knowledge("Recipes", "What the family cooks")
    assert is_public(kb)
    for file_id in files.values():
        live.admin.add_file_to_knowledge(kb["id"], file_id)
    listed = {k["name"]: k for k in live.admin.knowledge_bases()}
    assert listed["Recipes"]["file_count"] == 3
    held = live.admin.knowledge(kb["id"])
    assert {f["filename"]: f["id"] for f in held["files"]} == files
    assert {f["meta"]["file_hash"] for f in held["files"]} == {
        hashlib.sha256(d).hexdigest() for d in DOCS.values()}
    live.state["kb"] = kb


def test_removing_a_document(live: Live) -> None:
    kb, bread = live.state["kb"], live.state["files"]["bread.md"]
    answer = live.admin.remove_file_from_knowledge(kb["id"], bread)
    assert bread not in {f["id"] for f in answer["files"]}
    assert {f["filename"] for f in live.admin.knowledge(kb["id"])["files"]} == {
        "pasta.md", "soup.md"}
    with pytest.raises(WebUIError, match=f"has no file {bread}"):
        live.admin.file(bread)  # removed with its file: 0.12.4's default


def test_a_preset_on_the_knowledge_base(live: Live) -> None:
    form = preset_form(model_id="family-cook", name="Family cook", base_model_id=PHI3,
                       system="You are the family's cook. Answer from the recipes.",
                       params={"temperature": 0.3}, knowledge=[live.state["kb"]],
                       description="Recipes and meal plans")
    created = live.admin.create_model(form)
    assert is_public(created)
    (preset,) = [m for m in live.admin.models() if m["id"] == "family-cook"]
    assert preset["base_model_id"] == PHI3
    assert preset["params"]["system"] == "You are the family's cook. Answer from the recipes."
    assert preset["params"]["function_calling"] == "legacy"
    assert [(k["id"], k["type"]) for k in preset["meta"]["knowledge"]] == [
        (live.state["kb"]["id"], "collection")]
    with pytest.raises(WebUIError, match="already has a model family-cook"):
        live.admin.create_model(form)


def test_a_family_member_sees_and_uses_the_preset(live: Live) -> None:
    live.admin.add_user(*KAI, "user")
    with live.user() as kai:
        models = {m["id"]: m for m in kai.user_visible_models()}
        assert "family-cook" in models
        assert PHI3 not in models  # an Ollama model without a model row is admin-only
        assert "system" not in models["family-cook"]["info"]["params"]  # hidden from readers
        assert [k["name"] for k in kai.knowledge_bases()] == ["Recipes"]
        assert {f["filename"] for f in kai.knowledge(live.state["kb"]["id"])["files"]} == {
            "pasta.md", "soup.md"}

        # ... but the preset answers only once its base model is readable by users too
        refused = chat_as(live, kai, "family-cook")
        assert (refused.status_code, refused.json()) == (400, {"detail": "Model not found"})
        base = live.admin.set_model_access(PHI3, [PUBLIC_READ])
        assert base["base_model_id"] is None
        answered = chat_as(live, kai, "family-cook")
        assert answered.status_code == 200, answered.text
        # legacy retrieval ran on the knowledge base; the removed document is not in it
        sources = answered.json()["sources"]
        assert [s["source"]["name"] for s in sources] == ["Recipes"]
        names = {m["name"] for s in sources for m in s["metadata"]}
        assert names == {"pasta.md", "soup.md"}


def test_changes_and_clean_up(live: Live) -> None:
    kb = live.state["kb"]
    renamed = live.admin.update_knowledge(kb["id"], name="Cooking", description="Recipes")
    assert renamed["name"] == "Cooking" and is_public(renamed)  # grants untouched
    private = preset_form(model_id="family-cook", name="Family cook", base_model_id=PHI3,
                          system="Be brief.", params={}, knowledge=[renamed], public=False)
    assert not is_public(live.admin.update_model("family-cook", private))
    with live.user() as kai:
        assert "family-cook" not in {m["id"] for m in kai.user_visible_models()}
    live.admin.delete_model("family-cook")
    assert live.admin.model("family-cook") is None
    live.admin.delete_knowledge(kb["id"])
    assert live.admin.knowledge_bases() == []
    for name in ("pasta.md", "soup.md"):  # files outlive their knowledge base
        live.admin.delete_file(live.state["files"][name])
