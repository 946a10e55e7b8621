"""Open WebUI as code, end to end: webui.yaml pushed to git, converged through the real
Open WebUI's admin API (the image built from the pinned wheel), read back through it.

The "cloud" provider is outside the stack, as a real one is: the session's stand-in
(harness.CloudProvider, tests/ollama_double/cloud.py) that Open WebUI reaches by a public
name over its network with a route out, with its key in the server's secrets file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from .browser import open_page
from .harness import (
    REPO_ROOT,
    CloudProvider,
    Server,
    StateRepo,
    example_repo,
    new_project,
    wait_for,
)

ARTIFACTS = REPO_ROOT / "tests" / "e2e" / "artifacts"

ADMIN = ("admin@lanai.home.arpa", "e2e-webui-admin-pw-5")
CLOUD = CloudProvider.URL
WEBUI_YAML = f"""\
signup: pending
default_model: phi3:3.8b-mini-4k-instruct-q4_K_M
memories: true
connections:
  ollama: [http://ollama:11434]
  openai:
    - {{name: cloud, url: {CLOUD}, key: CLOUD_API_KEY}}
voice:
  # OpenAI-compatible speech endpoints (the stand-in cloud): local Whisper would have
  # Open WebUI download a model at every audio update, which this test machine cannot.
  stt: {{engine: openai, url: {CLOUD}, key: CLOUD_API_KEY, model: whisper-1}}
  tts: {{engine: openai, url: {CLOUD}, key: CLOUD_API_KEY, model: tts-1, voice: nova}}
rag:
  embedding_model: nomic-embed-text:v1.5
model_access:
  llama3.1:8b-instruct-q4_K_M: everyone
  deepseek-r1:7b-qwen-distill-q4_K_M: [kid@lanai.home.arpa]
users:
  - {{name: Kid, email: kid@lanai.home.arpa}}
managed: [signup, memories, connections, voice, rag]
"""


class Family:
    def __init__(self, server: Server, repo: StateRepo, port: int) -> None:
        self.server, self.repo = server, repo
        self.url = f"http://127.0.0.1:{port}"
        self._token = ""
        self.kid_password = ""

    def token(self) -> str:
        """The admin's session, signed in once (Open WebUI allows 15 sign-ins in 3 minutes)."""
        if not self._token:
            answer = httpx.post(f"{self.url}/api/v1/auths/signin", timeout=30,
                                json={"email": ADMIN[0], "password": ADMIN[1]})
            assert answer.status_code == 200, answer.text
            self._token = answer.json()["token"]
        return self._token

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", timeout=30,
                           headers={"Authorization": f"Bearer {self.token()}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        answer = httpx.post(f"{self.url}{path}", timeout=60, json=body,
                            headers={"Authorization": f"Bearer {self.token()}"})
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def family(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Family]:
    root = tmp_path_factory.mktemp("webui")
    project = new_project()
    repo, ports = example_repo(root, project)
    port = ports.webui
    repo.write("webui.yaml", WEBUI_YAML)
    repo.commit_push("The family's Open WebUI")
    server = Server(root, repo, project, docker_client,
                    {"WEBUI_SECRET_KEY": "e2e-webui-secret", "WEBUI_ADMIN_PASSWORD": ADMIN[1],
                     "CLOUD_API_KEY": CloudProvider.KEY})
    yield Family(server, repo, port)
    server.teardown()


def test_a_push_sets_what_the_family_sees_and_reads_back_through_the_api(family: Family):
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    groups = {a["group"] for a in outcome["webui"]["actions"] if a["kind"] == "settings"}
    assert {"auth", "models", "openai"} <= groups
    auth = family.get("/api/v1/auths/admin/config")
    assert (auth["ENABLE_SIGNUP"], auth["DEFAULT_USER_ROLE"], auth["ENABLE_MEMORIES"]) == (
        True, "pending", True)
    openai = family.get("/openai/config")
    assert openai["ENABLE_OPENAI_API"] is True
    assert openai["OPENAI_API_BASE_URLS"] == [CLOUD]
    assert openai["OPENAI_API_KEYS"] == ["sk-cloud-e2e-123"]
    assert family.get("/ollama/config")["OLLAMA_BASE_URLS"] == ["http://ollama:11434"]
    assert family.get("/api/v1/configs/models")["DEFAULT_MODELS"] == \
        "phi3:3.8b-mini-4k-instruct-q4_K_M"
    audio = family.get("/api/v1/audio/config")
    assert {k: audio["stt"][k] for k in ("ENGINE", "MODEL", "OPENAI_API_BASE_URL")} == {
        "ENGINE": "openai", "MODEL": "whisper-1", "OPENAI_API_BASE_URL": CLOUD}
    assert {k: audio["tts"][k] for k in ("ENGINE", "MODEL", "VOICE", "OPENAI_API_BASE_URL")} == {
        "ENGINE": "openai", "MODEL": "tts-1", "VOICE": "nova", "OPENAI_API_BASE_URL": CLOUD}
    assert audio["tts"]["OPENAI_API_KEY"] == "sk-cloud-e2e-123"
    embedding = family.get("/api/v1/retrieval/embedding")
    assert (embedding["RAG_EMBEDDING_ENGINE"], embedding["RAG_EMBEDDING_MODEL"]) == (
        "ollama", "nomic-embed-text:v1.5")
    voice = family.server.status()["voice"]
    assert voice["lan"] is True and "https://ai.home.arpa/" in voice["summary"]
    # The secret never reaches lanai's own records.
    assert "sk-cloud-e2e-123" not in (family.server.home / "history.jsonl").read_text()
    assert "sk-cloud-e2e-123" not in (family.server.home / "webui.json").read_text()


def test_open_webui_lists_the_cloud_providers_models_reached_over_its_way_out(
        family: Family):
    models = wait_for(lambda: {m["id"] for m in family.get("/api/models")["data"]}
                      >= set(CloudProvider.MODELS) and family.get("/api/models")["data"], 60,
                      "the cloud's models in Open WebUI's list")
    assert {m["id"] for m in models} >= {*CloudProvider.MODELS,
                                         "phi3:3.8b-mini-4k-instruct-q4_K_M"}
    # Open WebUI asked the provider itself, from its address on the stack's lan network
    # (the way out that the example gives it), with the key from the secrets file.
    cloud = CloudProvider.current
    assert cloud is not None
    webui = family.server.containers()["open-webui"]
    address = webui.attrs["NetworkSettings"]["Networks"][f"{family.server.project}_lan"]
    asked = cloud.requests_from(address["IPAddress"])
    assert any(line.startswith("GET /v1/models ") for line in asked), asked
    assert not any('" 401 ' in line for line in cloud.container.logs().decode().splitlines()
                   if address["IPAddress"] in line)


def test_a_family_member_gets_an_account_and_a_one_time_password_shown_once(family: Family):
    code, listed = family.server.lanai_json("users")
    assert code == 0, listed
    [kid] = listed["users"]
    assert kid["email"] == "kid@lanai.home.arpa" and kid["role"] == "user"
    password = kid["one_time_password"]
    assert password and len(password) >= 12
    family.kid_password = password
    assert family.server.lanai_json("users")[1]["users"][0]["one_time_password"] is None
    signed_in = httpx.post(f"{family.url}/api/v1/auths/signin", timeout=30,
                           json={"email": kid["email"], "password": password})
    assert signed_in.status_code == 200 and signed_in.json()["role"] == "user"


def test_a_second_reconcile_writes_nothing_to_open_webui(family: Family):
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    assert outcome["webui"]["actions"] == []
    assert outcome["webui"]["drift"] == []


def test_a_setting_changed_by_hand_is_drift_healed_only_where_managed(family: Family):
    auth = family.get("/api/v1/auths/admin/config")
    family.post("/api/v1/auths/admin/config", {**auth, "ENABLE_SIGNUP": False})
    models = family.get("/api/v1/configs/models")
    family.post("/api/v1/configs/models", {**models, "DEFAULT_MODELS": "lanai-test:tiny"})
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    drift = {d["key"]: d for d in outcome["webui"]["drift"]}
    assert drift["ENABLE_SIGNUP"]["healed"] is True  # signup is managed
    assert drift["DEFAULT_MODELS"]["healed"] is False  # default_model is not
    assert family.get("/api/v1/auths/admin/config")["ENABLE_SIGNUP"] is True
    assert family.get("/api/v1/configs/models")["DEFAULT_MODELS"] == "lanai-test:tiny"
    code, data = family.server.lanai_json("drift")
    assert code == 1
    assert any(d["service"] == "open-webui" and "DEFAULT_MODELS" in d["detail"]
               for d in data["drift"])


def test_a_provider_whose_key_is_missing_is_reported_not_half_configured(family: Family):
    family.repo.replace("webui.yaml", "  openai:\n", "  openai:\n"
                        "    - {name: other, url: https://api.example.invalid/v1, "
                        "key: OTHER_API_KEY}\n")
    family.repo.commit_push("Another provider, key not set yet")
    code, outcome = family.server.reconcile()
    assert code == 3, outcome
    assert outcome["error"].startswith("connection other (https://api.example.invalid/v1) "
                                       "needs the secret OTHER_API_KEY")
    assert family.get("/openai/config")["OPENAI_API_BASE_URLS"] == [CLOUD]


DOCS = {"docs/family/recipes.md": "# Recipes\nGrandma's soup: leeks, potatoes, cream.\n",
        "docs/family/school.md": "# School\nThe bus leaves at 7:40 on weekdays.\n",
        "docs/family/garden.md": "# Garden\nWater the tomatoes every second evening.\n"}
KNOWLEDGE = """\
knowledge:
  - name: Family
    description: Recipes, school and garden notes
    files: [docs/family/*.md]
presets:
  - id: family-helper
    name: Family helper
    base_model: phi3:3.8b-mini-4k-instruct-q4_K_M
    system: You help the family. Answer in two sentences.
    params: {temperature: 0.3}
    knowledge: [Family]
"""


def test_a_knowledge_base_with_three_documents_and_a_preset_arrive_as_declared(
        family: Family):
    # The provider without a key (the test before) goes; knowledge and a preset come.
    text = family.repo.read("webui.yaml")
    family.repo.write("webui.yaml", text.replace(
        "    - {name: other, url: https://api.example.invalid/v1, key: OTHER_API_KEY}\n", "")
        + KNOWLEDGE)
    for path, body in DOCS.items():
        (family.repo.work / path).parent.mkdir(parents=True, exist_ok=True)
        (family.repo.work / path).write_text(body)
    family.repo.commit_push("Family knowledge and a helper preset")
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    done = [(a["kind"], a.get("path") or a.get("name") or a.get("id"))
            for a in outcome["webui"]["actions"] if a["kind"] != "settings"]
    assert ("knowledge", "Family") in done and ("preset", "family-helper") in done
    assert sorted(p for k, p in done if k == "upload") == sorted(DOCS)
    [kb] = [k for k in family.get("/api/v1/knowledge/")["items"] if k["name"] == "Family"]
    files = family.get(f"/api/v1/knowledge/{kb['id']}/files?page=1&limit=100")
    files = files["items"] if isinstance(files, dict) else files
    assert sorted(f["meta"]["name"] for f in files) == sorted(p.rsplit("/", 1)[1] for p in DOCS)
    preset = family.get("/api/v1/models/model?id=family-helper")
    assert preset["base_model_id"] == "phi3:3.8b-mini-4k-instruct-q4_K_M"
    assert preset["params"]["system"].startswith("You help the family")
    assert [k["id"] for k in preset["meta"]["knowledge"]] == [kb["id"]]


def test_unchanged_documents_are_not_uploaded_again_and_an_edit_resyncs_only_it(
        family: Family):
    code, outcome = family.server.reconcile()
    assert code == 0 and outcome["webui"]["actions"] == [], outcome
    (family.repo.work / "docs/family/school.md").write_text("# School\nThe bus leaves at 7:45.\n")
    family.repo.commit_push("The bus leaves later")
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    assert [(a["kind"], a.get("path")) for a in outcome["webui"]["actions"]
            if a["kind"] != "settings"] == [("replace", "docs/family/school.md")]


def test_the_family_member_sees_the_preset_in_a_browser_and_the_knowledge_base(
        family: Family):
    signed_in = httpx.post(f"{family.url}/api/v1/auths/signin", timeout=30,
                           json={"email": "kid@lanai.home.arpa",
                                 "password": family.kid_password})
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["token"]
    # What the '#' picker and the workspace list for this account: the knowledge base.
    visible = httpx.get(f"{family.url}/api/v1/knowledge/", timeout=30,
                        headers={"Authorization": f"Bearer {token}"}).json()["items"]
    assert [k["name"] for k in visible] == ["Family"]
    # The models granted in model_access (and the preset's base), nothing else.
    models = httpx.get(f"{family.url}/api/models", timeout=60,
                       headers={"Authorization": f"Bearer {token}"}).json()["data"]
    ids = {m["id"] for m in models}
    assert {"llama3.1:8b-instruct-q4_K_M", "deepseek-r1:7b-qwen-distill-q4_K_M",
            "family-helper"} <= ids
    assert "nomic-embed-text:v1.5" not in ids
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "family-member-preset.png"
    # A signed-in browser keeps its session token in localStorage.
    facts = open_page(f"{family.url}/?model=family-helper", ca_pem=None, screenshot=shot,
                      wait_for_text="Family helper", timeout=120,
                      before_load=f"localStorage.setItem('token', {token!r});")
    assert "Family helper" in facts.text
    assert shot.stat().st_size > 10_000


# -- knowledge from the repo's own files, converged with what Open WebUI really holds ------

EVERYTHING = """\
  - name: Everything
    files: ["**/*"]
"""


def kb_files(family: Family, name: str) -> list[dict[str, Any]]:
    [kb] = [k for k in family.get("/api/v1/knowledge/")["items"] if k["name"] == name]
    files = family.get(f"/api/v1/knowledge/{kb['id']}/files?page=1&limit=100")
    return files["items"] if isinstance(files, dict) else files


def uploads_left(doing: str | None) -> int:
    """From "open-webui settings: uploading knowledge Everything 3/10": 7."""
    prefix = "open-webui settings: uploading knowledge Everything "
    if not doing or not doing.startswith(prefix):
        return 0
    done, total = doing.removeprefix(prefix).split("/")
    return int(total) - int(done)


def repo_path(record: dict[str, Any]) -> str:
    return ((record.get("meta") or {}).get("data") or {}).get("lanai_path") or record["filename"]


def test_everything_is_the_commits_own_files_and_status_is_progressing_until_uploaded(
        family: Family):
    """`**/*` once uploaded lanai's secrets env file. Now it sees only the commit's files,
    never a link (here one at the secrets file), and `lanai status` says Progressing with
    the upload it is on until the knowledge base is complete. The embedding model (the
    Ollama double) is paused so the upload is caught in the middle, whatever the speed."""
    family.repo.write("webui.yaml", family.repo.read("webui.yaml").replace(
        "    files: [docs/family/*.md]\n", "    files: [docs/family/*.md]\n" + EVERYTHING))
    link = family.repo.work / "docs" / "family" / "settings.md"
    link.symlink_to("../../.lanai-secrets/open-webui.env")
    family.repo.commit_push("Everything in the repo as knowledge")
    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=family.repo.work, check=True,
                             capture_output=True, text=True).stdout.splitlines()
    own = sorted(line.split("\t", 1)[1] for line in tracked if line.startswith("100"))
    ollama = None
    reconcile = subprocess.Popen([sys.executable, "-m", "reconciler", "reconcile", "--json"],
                                 env=family.server.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: uploads_left(family.server.status().get("doing")) >= 2, 600,
                 "uploads to Everything with at least two to go")
        ollama = family.server.containers()["ollama"]  # as it runs now (a deploy may re-create it)
        ollama.pause()  # the next document's embedding waits until the unpause
        status = family.server.status()
        assert status["sync"] == "Progressing", status
        assert status["doing"].startswith("open-webui settings: uploading knowledge Everything")
    finally:
        if ollama is not None:
            with contextlib.suppress(docker.errors.APIError):
                ollama.unpause()
        out, err = reconcile.communicate(timeout=900)
    outcome = json.loads(out)
    assert reconcile.returncode == 0 and not outcome["webui"]["errors"], (outcome, err)
    held = kb_files(family, "Everything")
    contents: dict[str, str] = {}  # equal files are uploaded once (Open WebUI refuses copies)
    for path in own:
        contents.setdefault(hashlib.sha256((family.repo.work / path).read_bytes()).hexdigest(),
                            path)
    assert sorted(repo_path(f) for f in held) == sorted(contents.values())
    assert "docs/family/settings.md" not in own  # the link is no document
    for record in held:
        content = family.get(f"/api/v1/files/{record['id']}")["data"].get("content") or ""
        assert "e2e-webui-secret" not in content and ADMIN[1] not in content, record["filename"]
    status = family.server.status()
    assert (status["sync"], status["doing"], status["problems"]) == ("Synced", None, {})


def test_after_a_restore_knowledge_converges_with_what_open_webui_holds(family: Family):
    """The data goes back to a backup taken before an edit; lanai's record is newer than
    Open WebUI's data. The sync compares with Open WebUI's files by content: it replaces
    the old copy once, then leaves Open WebUI alone at every poll."""
    code, taken = family.server.lanai_json("backup")
    assert code == 0, taken
    garden = family.repo.work / "docs" / "family" / "garden.md"
    garden.write_text("# Garden\nWater the tomatoes every evening in July.\n")
    family.repo.commit_push("Water more in July")
    code, outcome = family.server.reconcile()
    assert code == 0, outcome
    code, restored = family.server.lanai_json("restore", taken["id"], "--yes")
    assert code == 0, restored
    code, outcome = family.server.reconcile()
    assert code == 0 and not outcome["webui"]["errors"], outcome
    want = hashlib.sha256(garden.read_bytes()).hexdigest()
    gardens = [f for f in kb_files(family, "Family")
               if repo_path(f) in ("docs/family/garden.md", "garden.md")]
    assert [f["meta"]["file_hash"] for f in gardens] == [want]
    uploads = family.get("/api/v1/files/count")
    for _ in range(2):  # polls: nothing uploaded again, nothing recorded as an error
        code, outcome = family.server.reconcile()
        assert code == 0 and outcome["webui"]["actions"] == [], outcome
    assert family.get("/api/v1/files/count") == uploads  # no upload left behind
    status = family.server.status()
    assert (status["sync"], status["health"], status["problems"]) == (
        "Synced", "Healthy", {}), status
