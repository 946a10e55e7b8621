"""reconciler.webui.api against a real Open WebUI 0.12.4 (the image built from the pinned wheel).

One container for the module, started the way the example stack starts it (admin
from the environment, sign-ups pending, no OpenAI, embeddings through Ollama).
Every setting is written with a setter and read back through a second client that
signs in anew, so what is checked is what Open WebUI stored, not what it echoed.
Nothing here uses lanai's reconciler.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest

from reconciler.webui.api import WebUI
from reconciler.webui.errors import WebUIError, WhisperUnavailable

from .harness import free_port, wait_for

IMAGE = "ghcr.io/open-webui/open-webui:v0.12.4"
ADMIN_EMAIL = "admin@lanai.home.arpa"
ADMIN_PASSWORD = "e2e-webui-api-admin-7b2e"
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers, nothing is reached


class Live:
    def __init__(self, url: str, admin: WebUI) -> None:
        self.url, self.admin = url, admin

    def fresh(self) -> WebUI:
        """Another client with its own session: reads what the server stored."""
        client = WebUI(self.url)
        client.signin(ADMIN_EMAIL, ADMIN_PASSWORD)
        return client


@pytest.fixture(scope="module")
def live(docker_client: docker.DockerClient) -> Iterator[Live]:
    port = free_port()
    container = docker_client.containers.run(
        IMAGE, detach=True, name=f"lanai-e2e-webui-api-{uuid.uuid4().hex[:8]}",
        ports={"8080/tcp": ("127.0.0.1", port)},
        environment={
            "WEBUI_SECRET_KEY": "e2e-webui-api-secret",
            "WEBUI_ADMIN_EMAIL": ADMIN_EMAIL, "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "WEBUI_ADMIN_NAME": "Admin", "DEFAULT_USER_ROLE": "pending",
            "ENABLE_OPENAI_API": "false",
            # The image has no sentence-transformers model; Ollama is the engine lanai uses.
            "RAG_EMBEDDING_ENGINE": "ollama", "OLLAMA_BASE_URL": NOWHERE,
        })
    url = f"http://127.0.0.1:{port}"
    admin = WebUI(url)
    try:
        def healthy() -> bool:
            container.reload()
            if container.status == "exited":
                raise AssertionError("Open WebUI exited:\n" + container.logs(tail=40).decode())
            return admin.health()

        wait_for(healthy, 120, "Open WebUI to answer /health", interval=0.5)
        admin.signin(ADMIN_EMAIL, ADMIN_PASSWORD)
        yield Live(url, admin)
    finally:
        admin.close()
        container.remove(force=True, v=True)


def test_a_wrong_admin_password_is_one_clear_sentence(live: Live) -> None:
    with WebUI(live.url) as client, pytest.raises(WebUIError) as caught:
        client.signin(ADMIN_EMAIL, "not-the-password")
    assert caught.value.status == 400
    assert str(caught.value) == (
        f"Open WebUI refused the sign-in of {ADMIN_EMAIL}: the admin password in the server's "
        "secrets file does not match Open WebUI's admin account.")


def test_signup_settings(live: Live) -> None:
    before = live.admin.get_auth_config()
    assert before["DEFAULT_USER_ROLE"] == "pending"  # from the environment at first start
    live.admin.set_auth_config({"ENABLE_SIGNUP": True, "DEFAULT_USER_ROLE": "user"})
    with live.fresh() as fresh:
        after = fresh.get_auth_config()
    assert after["ENABLE_SIGNUP"] is True
    assert after["DEFAULT_USER_ROLE"] == "user"
    assert {k: v for k, v in after.items() if k not in ("ENABLE_SIGNUP", "DEFAULT_USER_ROLE")} \
        == {k: v for k, v in before.items() if k not in ("ENABLE_SIGNUP", "DEFAULT_USER_ROLE")}


def test_an_ignored_value_is_reported(live: Live) -> None:
    with pytest.raises(WebUIError, match="did not keep JWT_EXPIRES_IN"):
        live.admin.set_auth_config({"JWT_EXPIRES_IN": "four weeks"})


def test_memories(live: Live) -> None:
    live.admin.set_memories_config({"ENABLE_MEMORIES": False})
    with live.fresh() as fresh:
        assert fresh.get_memories_config()["ENABLE_MEMORIES"] is False
        fresh.set_memories_config({"ENABLE_MEMORIES": True})
        fresh.set_default_permissions({"features": {"memories": True}})
    assert live.admin.get_memories_config()["ENABLE_MEMORIES"] is True
    assert live.admin.get_default_permissions()["features"]["memories"] is True


def test_openai_compatible_connection(live: Live) -> None:
    assert live.admin.get_openai_config()["ENABLE_OPENAI_API"] is False
    live.admin.set_openai_config({
        "ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": [f"{NOWHERE}/v1"],
        "OPENAI_API_KEYS": ["sk-test"], "OPENAI_API_CONFIGS": {"0": {"enable": True}}})
    with live.fresh() as fresh:
        config = fresh.get_openai_config()
    assert config["ENABLE_OPENAI_API"] is True
    assert config["OPENAI_API_BASE_URLS"] == [f"{NOWHERE}/v1"]
    assert config["OPENAI_API_KEYS"] == ["sk-test"]
    assert config["OPENAI_API_CONFIGS"]["0"]["enable"] is True


def test_ollama_connection(live: Live) -> None:
    live.admin.set_ollama_config({"OLLAMA_BASE_URLS": [NOWHERE, "http://127.0.0.1:11"]})
    with live.fresh() as fresh:
        config = fresh.get_ollama_config()
    assert config["OLLAMA_BASE_URLS"] == [NOWHERE, "http://127.0.0.1:11"]
    assert config["ENABLE_OLLAMA_API"] is True


def test_ollama_connections_one_per_server_turned_off_and_on(live: Live) -> None:
    """Swarm mode's shape: configs keyed by index; one turned off and on again keeps the
    others' and its own other keys; a key past the list is dropped by Open WebUI."""
    urls = [NOWHERE, "http://127.0.0.1:11"]
    live.admin.set_ollama_config({"OLLAMA_BASE_URLS": urls, "OLLAMA_API_CONFIGS": {
        "0": {"enable": True}, "1": {"enable": True, "tags": ["box-c"]}}})
    live.admin.set_ollama_config({"OLLAMA_API_CONFIGS": {"1": {"enable": False}}})
    with live.fresh() as fresh:
        config = fresh.get_ollama_config()
    assert config["OLLAMA_BASE_URLS"] == urls
    assert config["OLLAMA_API_CONFIGS"] == {"0": {"enable": True},
                                            "1": {"enable": False, "tags": ["box-c"]}}
    live.admin.set_ollama_config({"OLLAMA_BASE_URLS": urls[:1]})
    with live.fresh() as fresh:
        assert fresh.get_ollama_config()["OLLAMA_API_CONFIGS"] == {"0": {"enable": True}}


def test_voice(live: Live) -> None:
    # Local Whisper: the update loads faster-whisper in the request; the test image is
    # offline (HF_HUB_OFFLINE=1) and has no model, so the server stores the form and then
    # answers 500 (and drops the kept-alive connection, which the client's read survives).
    with pytest.raises(WhisperUnavailable, match="saved the voice settings") as caught:
        live.admin.set_audio_config({"stt": {"ENGINE": "", "WHISPER_MODEL": "base"},
                                     "tts": {"ENGINE": ""}})
    assert caught.value.config["stt"]["WHISPER_MODEL"] == "base"
    with live.fresh() as fresh:
        config = fresh.get_audio_config()
    assert (config["stt"]["ENGINE"], config["stt"]["WHISPER_MODEL"]) == ("", "base")
    assert config["tts"]["ENGINE"] == ""
    # the server still answers on the same client after its 500
    assert live.admin.health()


def test_embedding(live: Live) -> None:
    live.admin.set_embedding_config({"RAG_EMBEDDING_ENGINE": "ollama",
                                     "RAG_EMBEDDING_MODEL": "nomic-embed-text:v1.5",
                                     "ollama_config": {"url": NOWHERE}})
    with live.fresh() as fresh:
        config = fresh.get_embedding_config()
    assert config["RAG_EMBEDDING_ENGINE"] == "ollama"
    assert config["RAG_EMBEDDING_MODEL"] == "nomic-embed-text:v1.5"
    assert config["ollama_config"]["url"] == NOWHERE


def test_default_model(live: Live) -> None:
    before = live.admin.get_models_config()
    live.admin.set_models_config({"DEFAULT_MODELS": "phi3:3.8b-mini-4k-instruct-q4_K_M"})
    with live.fresh() as fresh:
        after = fresh.get_models_config()
    assert after["DEFAULT_MODELS"] == "phi3:3.8b-mini-4k-instruct-q4_K_M"
    assert after["DEFAULT_MODEL_METADATA"] == before["DEFAULT_MODEL_METADATA"]


def test_users(live: Live) -> None:
    added = live.admin.add_user("Kai", "kai@lanai.home.arpa", "kai-one-time-pw-1", "pending")
    assert added["role"] == "pending"
    assert "token" not in added
    live.admin.update_role(added["id"], "user")
    with live.fresh() as fresh:
        roles = {u["email"]: u["role"] for u in fresh.users()}
    assert roles == {ADMIN_EMAIL: "admin", "kai@lanai.home.arpa": "user"}
    admin_id = next(u["id"] for u in live.admin.users() if u["email"] == ADMIN_EMAIL)
    with pytest.raises(WebUIError, match="primary admin"):
        live.admin.update_role(admin_id, "user")
