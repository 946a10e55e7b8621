"""load_state on copies of the example state repo: every problem names file, key path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode, StateError
from reconciler.desired.load import (
    InvalidState,
    Problem,
    format_path,
    is_ollama,
    is_pinned,
    load_state,
    published_host_ip,
)

OLLAMA_PORTS_COMMENTED = '    # ports:\n    #   - "127.0.0.1:11434:11434"\n'


def problems_of(root: Path) -> list[Problem]:
    with pytest.raises(InvalidState) as info:
        load_state(root)
    return info.value.problems


def only_problem(root: Path) -> Problem:
    problems = problems_of(root)
    assert len(problems) == 1, problems
    return problems[0]


# ---------------------------------------------------------------- the example


def test_example_state_loads(state_dir: Path) -> None:
    state = load_state(state_dir, commit="abc123")
    assert state.commit == "abc123"
    assert state.root == state_dir
    assert sorted(state.services) == ["ollama", "open-webui", "proxy"]
    assert state.services["ollama"]["image"] == "ollama/ollama:0.24.0"
    config = state.config
    assert config.project == "lanai"
    assert config.gpu == "auto"
    assert config.source.poll_interval == 60.0
    assert config.sync.health_timeout == 300.0
    assert config.sync.heal_limit.restarts == 3
    assert config.sync.heal_limit.window == 600.0
    assert config.sync.retry.max == 300.0
    assert config.secrets == {"open-webui": ["WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD"]}
    assert config.secret_names() == {"WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD"}
    assert config.security.allow_ollama_on_lan is False


def test_missing_lanai_yaml_means_defaults(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").unlink()
    state = load_state(state_dir)
    assert state.config.project == "lanai"
    assert state.config.secrets == {}
    assert state.config.sync.self_heal is True


def test_empty_lanai_yaml_means_defaults(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").write_text("# nothing set\n")
    assert load_state(state_dir).config.sync.prune is True


def test_missing_compose_file(state_dir: Path) -> None:
    (state_dir / "compose.yaml").unlink()
    problem = only_problem(state_dir)
    assert problem == Problem("compose.yaml", (), None, "file not found in the state repo")


def test_compose_file_setting_is_followed(state_dir: Path, edit) -> None:
    edit("lanai.yaml", "compose_file: compose.yaml\n", "compose_file: stack.yaml\n")
    (state_dir / "compose.yaml").rename(state_dir / "stack.yaml")
    assert sorted(load_state(state_dir).services) == ["ollama", "open-webui", "proxy"]
    (state_dir / "stack.yaml").write_text("services:\n  app:\n    image: nginx\n")
    (state_dir / "models.yaml").unlink()  # no Ollama in this stack
    (state_dir / "webui.yaml").unlink()  # nor Open WebUI
    problems = problems_of(state_dir)
    settings = (state_dir / "lanai.yaml").read_text().splitlines()
    secrets_line = settings.index("secrets:") + 2  # the service key right under it
    assert settings[secrets_line - 1] == "  open-webui:"
    https_line = settings.index("https:") + 1  # proxy and upstream are defaults: the section
    allow_line = settings.index("    prometheus: [host_network]") + 1
    assert [(p.file, p.path, p.line) for p in problems] == [
        ("stack.yaml", ("services", "app", "image"), 3),
        ("lanai.yaml", ("security", "allow", "prometheus"), allow_line),
        ("lanai.yaml", ("https", "proxy"), https_line),
        ("lanai.yaml", ("https", "upstream"), https_line),
        ("lanai.yaml", ("secrets", "open-webui"), secrets_line)]
    assert problems[2].message == "names service 'proxy', which is not in stack.yaml"
    assert problems[4].message == "names service 'open-webui', which is not in stack.yaml"


def test_compose_without_services(state_dir: Path) -> None:
    (state_dir / "compose.yaml").write_text("name: lanai\nservices: {}\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.path, problem.line) == ("compose.yaml", ("services",), 2)
    assert "at least one service" in problem.message


def test_lanai_yaml_that_is_not_a_mapping(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").write_text("- project: lanai\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.line, problem.message) == (
        "lanai.yaml", 1, "expected a mapping of settings")


# ---------------------------------------------------------------- YAML syntax


def test_malformed_lanai_yaml_names_file_and_line(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "  prune: true\n", "  prune: true: yes\n")
    problem = only_problem(state_dir)
    assert problem.file == "lanai.yaml"
    assert problem.line == line
    assert problem.message.startswith("invalid YAML: ")
    assert str(problem).startswith(f"lanai.yaml:{line}: invalid YAML")


def test_malformed_compose_yaml_names_file_and_line(state_dir: Path, edit) -> None:
    line = edit("compose.yaml", "    image: ollama/ollama:0.24.0\n",
                "    image: ollama/ollama:0.24.0: x\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.line) == ("compose.yaml", line)
    assert "mapping values are not allowed" in problem.message


def test_unclosed_flow_sequence_in_compose(state_dir: Path, edit) -> None:
    line = edit("compose.yaml", "    networks: [internal, egress]\n",
                "    networks: [internal, egress\n")
    problem = only_problem(state_dir)
    assert problem.file == "compose.yaml"
    # PyYAML notices the missing ']' at the next key, which cannot continue the list.
    assert problem.line == line + 1
    assert problem.message == ("invalid YAML: while parsing a flow sequence, expected ',' or "
                               "']', but got ':'")


def test_duplicate_key_in_lanai_yaml(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "  prune: true\n", "  prune: true\n  prune: false\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.line) == ("lanai.yaml", line + 1)
    assert "duplicate key 'prune'" in problem.message


def test_duplicate_service_in_compose(state_dir: Path) -> None:
    (state_dir / "compose.yaml").write_text(
        "services:\n  a:\n    image: x:1\n  a:\n    image: x:2\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.line) == ("compose.yaml", 4)
    assert "duplicate key 'a'" in problem.message


def test_not_utf8(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").write_bytes(b"project: \xff\xfe\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.message) == ("lanai.yaml", "not UTF-8 text")


# ---------------------------------------------------------------- schema


def test_unknown_key_suggests_the_known_one(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "  self_heal: true\n", "  selfheal: true\n")
    problem = only_problem(state_dir)
    assert problem == Problem("lanai.yaml", ("sync", "selfheal"), line,
                              "unknown key; did you mean 'self_heal'?")
    assert str(problem) == (
        f"lanai.yaml:{line}: sync.selfheal: unknown key; did you mean 'self_heal'?")


def test_unknown_key_inline_mapping(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").write_text("project: lanai\nsync: {selfheal: true}\n")
    problem = only_problem(state_dir)
    assert (problem.path, problem.line) == (("sync", "selfheal"), 2)
    assert problem.message == "unknown key; did you mean 'self_heal'?"


def test_unknown_nested_key(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "    restarts: 3\n", "    restart: 3\n")
    problem = only_problem(state_dir)
    assert (problem.path, problem.line) == (("sync", "heal_limit", "restart"), line)
    assert problem.message == "unknown key; did you mean 'restarts'?"


def test_unknown_key_without_a_close_match_lists_known_keys(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").write_text("security:\n  zzz: 1\n")
    problem = only_problem(state_dir)
    assert problem.message == (
        "unknown key; known keys: allow_ollama_on_lan, require_pinned_images, allow")


def test_wrong_type_bool(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "  prune: true\n", "  prune: maybe\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.path, problem.line) == ("lanai.yaml", ("sync", "prune"), line)
    assert "valid boolean" in problem.message
    assert problem.message.endswith("(got 'maybe')")


def test_wrong_type_duration(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "  poll_interval: 60s\n", "  poll_interval: soon\n")
    problem = only_problem(state_dir)
    assert (problem.path, problem.line) == (("source", "poll_interval"), line)
    assert problem.message == (
        "'soon' is not a duration; write it like 30s, 5m, 1h30m or 2d (got 'soon')")


def test_duration_below_minimum(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "  poll_interval: 60s\n", "  poll_interval: 1s\n")
    problem = only_problem(state_dir)
    assert (problem.path, problem.line) == (("source", "poll_interval"), line)
    assert "greater than or equal to 5" in problem.message


def test_gpu_must_be_one_of(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").write_text("gpu: sometimes\n")
    problem = only_problem(state_dir)
    assert (problem.path, problem.line) == (("gpu",), 1)
    assert "'auto', 'required' or 'off'" in problem.message


def test_bad_project_name(state_dir: Path) -> None:
    (state_dir / "lanai.yaml").write_text("project: My Stack\n")
    problem = only_problem(state_dir)
    assert problem.path == ("project",)
    assert problem.message.startswith("use lowercase letters")


def test_bad_secret_name(state_dir: Path, edit) -> None:
    edit("lanai.yaml", "    - WEBUI_SECRET_KEY\n", "    - webui-secret\n")
    problem = only_problem(state_dir)
    assert problem.path == ("secrets",)
    assert "secret name 'webui-secret' of service 'open-webui'" in problem.message


def test_several_problems_are_all_listed(state_dir: Path, edit) -> None:
    first = edit("lanai.yaml", "  self_heal: true\n", "  selfheal: true\n")
    second = edit("lanai.yaml", "  prune: true\n", "  prune: maybe\n")
    problems = problems_of(state_dir)
    # Listed in the order pydantic reports them; every one is there with its line.
    assert sorted((p.line, p.path) for p in problems) == [
        (first, ("sync", "selfheal")), (second, ("sync", "prune"))]
    assert all(p.file == "lanai.yaml" for p in problems)


def test_problems_in_both_files_are_listed(state_dir: Path, edit) -> None:
    settings_line = edit("lanai.yaml", "  prune: true\n", "  prune: true: yes\n")
    compose_line = edit("compose.yaml", "    image: ollama/ollama:0.24.0\n",
                        "    image: ollama/ollama:0.24.0: x\n")
    problems = problems_of(state_dir)
    assert [(p.file, p.line) for p in problems] == [
        ("lanai.yaml", settings_line), ("compose.yaml", compose_line)]


# ---------------------------------------------------------------- lanai's compose rules


def test_unpinned_images(state_dir: Path, edit) -> None:
    latest = edit("compose.yaml", "    image: ollama/ollama:0.24.0\n",
                  "    image: ollama/ollama:latest\n")
    untagged = edit("compose.yaml", "    image: ghcr.io/open-webui/open-webui:v0.12.4\n",
                    "    image: ghcr.io/open-webui/open-webui\n")
    problems = problems_of(state_dir)
    assert [(p.file, p.path, p.line) for p in problems] == [
        ("compose.yaml", ("services", "ollama", "image"), latest),
        ("compose.yaml", ("services", "open-webui", "image"), untagged)]
    assert problems[0].message.startswith("image 'ollama/ollama:latest' is not pinned")
    assert "git revert" in problems[1].message


def test_unpinned_images_allowed_when_not_required(state_dir: Path, edit) -> None:
    edit("compose.yaml", "    image: ollama/ollama:0.24.0\n", "    image: ollama/ollama:latest\n")
    edit("lanai.yaml", "  require_pinned_images: true\n", "  require_pinned_images: false\n")
    assert load_state(state_dir).services["ollama"]["image"] == "ollama/ollama:latest"


def test_built_service_needs_no_tag(state_dir: Path, edit) -> None:
    edit("compose.yaml", "    image: ollama/ollama:0.24.0\n",
         "    image: local/ollama\n    build: .\n")
    # Not the ollama/ollama image, so models.yaml must say which service runs Ollama.
    (state_dir / "models.yaml").write_text("ollama:\n  service: ollama\n")
    assert load_state(state_dir).services["ollama"]["build"] == "."


@pytest.mark.parametrize("port", ['"0.0.0.0:11434:11434"', '"11434:11434"', "11434",
                                  '"192.168.1.5:11434:11434"'])
def test_ollama_published_beyond_loopback_is_refused(state_dir: Path, edit, port: str) -> None:
    line = edit("compose.yaml", OLLAMA_PORTS_COMMENTED, f"    ports:\n      - {port}\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.path, problem.line) == (
        "compose.yaml", ("services", "ollama", "ports", 0), line + 1)
    assert problem.message.startswith("Ollama has no authentication")
    assert "security.allow_ollama_on_lan" in problem.message


def test_ollama_on_every_interface_says_so(state_dir: Path, edit) -> None:
    edit("compose.yaml", OLLAMA_PORTS_COMMENTED, '    ports:\n      - "11434:11434"\n')
    assert "publishes it on every interface" in only_problem(state_dir).message


@pytest.mark.parametrize("port", ['"127.0.0.1:11434:11434"', '"[::1]:11434:11434"',
                                  "{target: 11434, published: 11434, host_ip: 127.0.0.1}"])
def test_ollama_on_loopback_is_fine(state_dir: Path, edit, port: str) -> None:
    edit("compose.yaml", OLLAMA_PORTS_COMMENTED, f"    ports:\n      - {port}\n")
    assert len(load_state(state_dir).services["ollama"]["ports"]) == 1


def test_ollama_on_lan_when_allowed(state_dir: Path, edit) -> None:
    edit("compose.yaml", OLLAMA_PORTS_COMMENTED, '    ports:\n      - "0.0.0.0:11434:11434"\n')
    edit("lanai.yaml", "  allow_ollama_on_lan: false\n", "  allow_ollama_on_lan: true\n")
    assert load_state(state_dir).services["ollama"]["ports"] == ["0.0.0.0:11434:11434"]


def test_ollama_on_the_host_network_is_refused(state_dir: Path, edit) -> None:
    line = edit("compose.yaml", "    networks: [internal, egress]\n", "    network_mode: host\n")
    problems = problems_of(state_dir)
    assert {(p.path, p.line) for p in problems} == {(("services", "ollama", "network_mode"),
                                                     line)}
    assert len(problems) == 2  # the host network (security.allow) and Ollama's lack of auth
    # Allowing the host network is not allowing Ollama on the LAN.
    edit("lanai.yaml", "  allow:\n", "  allow:\n    ollama: [host_network]\n")
    problem = only_problem(state_dir)
    assert problem.message.startswith("Ollama has no authentication")


def test_secrets_for_a_service_not_in_compose(state_dir: Path, edit) -> None:
    edit("lanai.yaml", "  open-webui:\n    - WEBUI_SECRET_KEY\n",
         "  webui:\n    - WEBUI_SECRET_KEY\n")
    problem = only_problem(state_dir)
    assert (problem.file, problem.path) == ("lanai.yaml", ("secrets", "webui"))
    assert problem.message == "names service 'webui', which is not in compose.yaml"


def test_secrets_for_a_service_not_in_compose_names_the_line(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "  open-webui:\n    - WEBUI_SECRET_KEY\n",
                "  webui:\n    - WEBUI_SECRET_KEY\n")
    assert only_problem(state_dir).line == line


def test_bad_merge_key_is_a_problem_not_a_crash(state_dir: Path) -> None:
    (state_dir / "compose.yaml").write_text("services:\n  a:\n    <<: 5\n    image: x:1\n")
    assert only_problem(state_dir).file == "compose.yaml"


# ---------------------------------------------------------------- the error itself


def test_invalid_state_is_one_sentence_ending_with_the_fix(state_dir: Path, edit) -> None:
    line = edit("compose.yaml", "    image: ollama/ollama:0.24.0\n",
                "    image: ollama/ollama:latest\n")
    edit("compose.yaml", "    image: ghcr.io/open-webui/open-webui:v0.12.4\n",
         "    image: ghcr.io/open-webui/open-webui\n")
    with pytest.raises(InvalidState) as info:
        load_state(state_dir)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"compose.yaml:{line}: services.ollama.image: image "
                           "'ollama/ollama:latest' is not pinned;")
    assert text.endswith(" (and 1 more problem(s)); fix it in the state repo and push again.")
    assert text.count(". ") == 0  # one sentence
    assert isinstance(info.value, StateError)
    assert info.value.exit_code == ExitCode.INVALID
    assert info.value.deterministic is True


def test_single_problem_message_has_no_count(state_dir: Path, edit) -> None:
    edit("lanai.yaml", "  prune: true\n", "  prune: maybe\n")
    with pytest.raises(InvalidState) as info:
        load_state(state_dir)
    assert "more problem" not in str(info.value)
    assert str(info.value).endswith("; fix it in the state repo and push again.")


# ---------------------------------------------------------------- helpers


def test_format_path() -> None:
    assert format_path(()) == ""
    assert format_path(("sync", "selfheal")) == "sync.selfheal"
    assert format_path(("services", "ollama", "ports", 0)) == "services.ollama.ports[0]"


def test_problem_without_line_or_path() -> None:
    problem = Problem("compose.yaml", (), None, "file not found")
    assert str(problem) == "compose.yaml: file not found"


@pytest.mark.parametrize(("image", "pinned"), [
    ("ollama/ollama:0.24.0", True),
    ("ollama/ollama", False),
    ("ollama/ollama:latest", False),
    ("ghcr.io/open-webui/open-webui:v0.12.4", True),
    ("registry.local:5000/ollama", False),
    ("registry.local:5000/ollama:1.2", True),
    ("ollama/ollama@sha256:" + "a" * 64, True),
    ("ollama/ollama:${OLLAMA_TAG}", False),
])
def test_is_pinned(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


@pytest.mark.parametrize(("image", "expected"), [
    ("ollama/ollama:0.24.0", True),
    ("ollama/ollama", True),
    ("docker.io/ollama/ollama:0.24.0", True),
    ("ollama/ollama@sha256:" + "b" * 64, True),
    ("registry.local:5000/ollama/ollama:0.24.0", True),
    ("ghcr.io/open-webui/open-webui:ollama", False),
    (None, False),
])
def test_is_ollama(image: object, expected: bool) -> None:
    assert is_ollama(image) is expected


@pytest.mark.parametrize(("port", "host"), [
    ("11434:11434", None),
    ("11434", None),
    (11434, None),
    ("127.0.0.1:11434:11434", "127.0.0.1"),
    ("0.0.0.0:11434:11434", "0.0.0.0"),
    ("[::1]:11434:11434", "::1"),
    ("127.0.0.1::11434", "127.0.0.1"),
    ({"target": 11434, "host_ip": "127.0.0.1"}, "127.0.0.1"),
    ({"target": 11434}, None),
])
def test_published_host_ip(port: object, host: str | None) -> None:
    assert published_host_ip(port) == host


def test_backups_of_a_service_not_in_compose_names_the_line(state_dir: Path, edit) -> None:
    line = edit("lanai.yaml", "backups:\n", "backups:\n  service: webui\n") + 1
    problem = only_problem(state_dir)
    assert (problem.file, problem.path, problem.line) == ("lanai.yaml", ("backups", "service"),
                                                          line)
    assert problem.message == "names service 'webui', which is not in compose.yaml"


# ---------------------------------------------------------------- webui.yaml against the repo

def test_a_knowledge_pattern_that_matches_nothing_names_its_line(state_dir: Path) -> None:
    (state_dir / "docs").mkdir()
    (state_dir / "docs" / "a.md").write_text("# a\n")
    with (state_dir / "webui.yaml").open("a") as handle:
        handle.write("knowledge:\n  - name: Family\n    files:\n      - docs/*.md\n"
                     "      - recipes/*.md\n")
    line = (state_dir / "webui.yaml").read_text().splitlines().index("      - recipes/*.md") + 1
    problem = only_problem(state_dir)
    assert (problem.file, problem.path, problem.line) == (
        "webui.yaml", ("knowledge", 0, "files", 1), line)
    assert "'recipes/*.md' matches no file in the state repo" in problem.message


def test_knowledge_documents_are_listed_from_the_repo_alone(state_dir: Path) -> None:
    (state_dir / "docs").mkdir()
    (state_dir / "docs" / "a.md").write_text("# a\n")
    (state_dir / "docs" / "passwd.md").symlink_to("/etc/passwd")
    with (state_dir / "webui.yaml").open("a") as handle:
        handle.write("knowledge:\n  - name: Everything\n    files: ['**/*']\n")
    state = load_state(state_dir)
    paths = [d.path for d in state.documents["Everything"]]
    assert "docs/a.md" in paths and "compose.yaml" in paths
    assert "docs/passwd.md" not in paths
    assert not [p for p in paths if p.startswith(".")]


def test_a_preset_on_an_undeclared_model_names_its_line(state_dir: Path) -> None:
    with (state_dir / "webui.yaml").open("a") as handle:
        handle.write("presets:\n  - id: helper\n    name: Helper\n"
                     "    base_model: llama3.1:70b\n")
    line = (state_dir / "webui.yaml").read_text().splitlines().index(
        "    base_model: llama3.1:70b") + 1
    problem = only_problem(state_dir)
    assert (problem.file, problem.path, problem.line) == (
        "webui.yaml", ("presets", 0, "base_model"), line)
    assert "'llama3.1:70b' is not under local in models.yaml" in problem.message


def test_a_preset_on_a_declared_model_is_valid(state_dir: Path) -> None:
    with (state_dir / "webui.yaml").open("a") as handle:
        handle.write("presets:\n  - id: helper\n    name: Helper\n"
                     "    base_model: llama3.1:8b-instruct-q4_K_M\n")
    assert load_state(state_dir).webui.presets[0].base_model == "llama3.1:8b-instruct-q4_K_M"
