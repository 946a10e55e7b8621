"""Swarm mode's Open WebUI connections: one per Ollama server, a down server's turned off
(and back on when it returns, with no push), the embedding URL on a server that holds the
embedding model. The plan is pure; the converge runs against the stand-in of Open WebUI
0.12.4's admin routes (test_webui_api.FakeWebUI, which stores OLLAMA_API_CONFIGS as
routers/ollama.py update_config does: keys by index, those past the list dropped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.desired.webui_yaml import WebUIConfig
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered
from reconciler.webui import plan
from reconciler.webui.api import WebUI
from reconciler.webui.sync import NotReady, WebUIOutcome, WebUISync

from .test_webui_api import ADMIN, BASE, FakeWebUI, posted

B, C = "http://ollama-box-b:11434", "http://ollama-box-c:11434"
EMBED = "nomic-embed-text:v1.5"
LANAI = LanaiConfig.model_validate(yaml.safe_load("""
mode: swarm
servers:
  - {name: box-a, manager: true, gpu: none}
  - {name: box-b}
  - {name: box-c, gpu: 8GiB}
"""))


def models(embed_place: str | None = None) -> ModelsConfig:
    place = f"\n    place: {embed_place}" if embed_place else ""
    return ModelsConfig.model_validate(yaml.safe_load(f"""
local:
  - name: llama3.1:8b-instruct-q4_K_M
    place: box-c
  - name: {EMBED}{place}
"""))


@pytest.mark.parametrize(("place", "down", "enabled", "embedding"), [
    (None, set(), [True, True], B),  # on every server: the first
    (None, {"box-b"}, [False, True], C),  # the first is down: the next that holds it
    ("box-c", set(), [True, True], C),  # only where it is placed
    ("box-c", {"box-c"}, [True, False], C),  # its only holder is down: still there
    ("box-c", {"box-b", "box-c"}, [False, False], C),
])
def test_a_connection_per_ollama_server_off_while_its_server_is_down(
        place: str | None, down: set[str], enabled: list[bool], embedding: str) -> None:
    found = plan.swarm_ollamas(LANAI.servers, models(place), EMBED, down)
    assert found == plan.Ollamas(urls=[B, C], enabled=enabled, embedding_url=embedding)


def test_an_embedding_model_placed_nowhere_embeds_on_the_first_server_up() -> None:
    found = plan.swarm_ollamas(LANAI.servers, None, EMBED, {"box-b"})
    assert found.embedding_url == C


def test_swarm_connections_replace_webui_yamls() -> None:
    ollamas = plan.swarm_ollamas(LANAI.servers, models(), EMBED, {"box-c"})
    groups = plan.desired(WebUIConfig(), {}, "http://ollama:11434", ollamas).groups()
    assert groups["ollama"] == {"ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": [B, C],
                                "OLLAMA_API_CONFIGS": {"0": {"enable": True},
                                                       "1": {"enable": False}}}
    assert groups["embedding"]["ollama_config"] == {"url": B}


def test_compose_modes_connections_are_webui_yamls() -> None:
    groups = plan.desired(WebUIConfig(), {}, "http://ollama:11434").groups()
    assert groups["ollama"] == {"ENABLE_OLLAMA_API": True,
                                "OLLAMA_BASE_URLS": ["http://ollama:11434"]}
    assert groups["embedding"]["ollama_config"] == {"url": "http://ollama:11434"}


# -- the converge against the stand-in --------------------------------------------------------

@pytest.fixture
def fake() -> FakeWebUI:
    return FakeWebUI()


@pytest.fixture
def api(fake: FakeWebUI) -> Iterator[WebUI]:
    with WebUI(BASE, timeout=5, transport=httpx.MockTransport(fake)) as client:
        client.signin(*ADMIN)
        yield client


def rendered(tmp_path: Path, webui: str = "") -> Rendered:
    config = WebUIConfig.model_validate(yaml.safe_load(webui) or {})
    return Rendered(directory=tmp_path, commit="c" * 40, key="k", project="lanai",
                    compose_file="compose.yaml", services={},
                    settings=LANAI.model_dump(mode="json"),
                    models_settings=models().model_dump(mode="json"),
                    ollama_service="ollama", webui_settings=config.model_dump(mode="json"))


def sync(tmp_path: Path, down: set[str], **kw: object) -> WebUISync:
    settings = ServerSettings(home=tmp_path, repo=None, branch=None,
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    return WebUISync(settings, None, progress=lambda _m: None,  # type: ignore[arg-type]
                     down=lambda _r: down, **kw)  # type: ignore[arg-type]


def settle(tmp_path: Path, api: WebUI, target: Rendered, down: set[str], *,
           new_commit: bool) -> WebUIOutcome:
    out = WebUIOutcome()
    assert target.webui is not None
    sync(tmp_path, down)._settings(api, target, target.webui, out, new_commit)
    return out


def test_a_down_server_is_turned_off_and_back_on_with_no_push(
        tmp_path: Path, fake: FakeWebUI, api: WebUI) -> None:
    # Nothing managed: a hand change would be reported only; a server's state still follows.
    target = rendered(tmp_path, "managed: []\n")
    settle(tmp_path, api, target, set(), new_commit=True)
    assert fake.ollama == {"ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": [B, C],
                           "OLLAMA_API_CONFIGS": {"0": {"enable": True},
                                                  "1": {"enable": True}}}
    assert fake.rag["ollama_config"]["url"] == B
    fake.ollama["OLLAMA_API_CONFIGS"]["1"]["key"] = "set by hand"  # kept through the toggles
    fake.requests.clear()

    out = settle(tmp_path, api, target, {"box-b"}, new_commit=False)
    assert out.drift == []  # a box going down is nobody's hand change
    assert posted(fake, "/ollama/config/update")["OLLAMA_API_CONFIGS"] == {
        "0": {"enable": False}, "1": {"enable": True, "key": "set by hand"}}
    assert fake.rag["ollama_config"]["url"] == C  # embeddings go on where the model is
    assert [a["group"] for a in out.actions] == ["ollama", "embedding"]

    settle(tmp_path, api, target, set(), new_commit=False)
    assert fake.ollama["OLLAMA_API_CONFIGS"] == {"0": {"enable": True},
                                                 "1": {"enable": True, "key": "set by hand"}}
    assert fake.rag["ollama_config"]["url"] == B
    fake.requests.clear()
    assert settle(tmp_path, api, target, set(), new_commit=False).actions == []
    assert [r.method for r in fake.requests] == ["GET"] * 6  # converged: reads only


def test_a_hand_change_of_the_swarms_urls_is_still_drift(
        tmp_path: Path, fake: FakeWebUI, api: WebUI) -> None:
    target = rendered(tmp_path, "managed: []\n")
    settle(tmp_path, api, target, set(), new_commit=True)
    fake.ollama["OLLAMA_BASE_URLS"] = [B]
    out = settle(tmp_path, api, target, set(), new_commit=False)
    assert [(d["key"], d["healed"]) for d in out.drift] == [("OLLAMA_BASE_URLS", False)]
    assert fake.ollama["OLLAMA_BASE_URLS"] == [B]  # reported, not overwritten (not managed)


def test_in_swarm_mode_open_webui_is_reached_through_the_relay(tmp_path: Path) -> None:
    target = rendered(tmp_path)
    assert target.webui is not None
    assert sync(tmp_path, set(), url=lambda _r: "http://127.0.0.1:41234/").url(
        target, target.webui) == "http://127.0.0.1:41234"
    with pytest.raises(NotReady, match="lanai has no way to open-webui in the swarm yet"):
        sync(tmp_path, set(), url=lambda _r: None).url(target, target.webui)
    out = sync(tmp_path, set()).converge(target, new_commit=True)
    assert out.errors == ["Open WebUI's settings wait: lanai has no way to open-webui in the "
                          "swarm yet (the relay on the manager does not list it)"]


def test_setting_one_connection_keeps_the_others(fake: FakeWebUI, api: WebUI) -> None:
    fake.ollama = {"ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": [B, C],
                   "OLLAMA_API_CONFIGS": {"0": {"enable": True, "prefix_id": "b"},
                                          "1": {"enable": True}}}
    api.set_ollama_config({"OLLAMA_API_CONFIGS": {"1": {"enable": False}}})
    assert fake.ollama["OLLAMA_API_CONFIGS"] == {"0": {"enable": True, "prefix_id": "b"},
                                                 "1": {"enable": False}}
