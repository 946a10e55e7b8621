"""Property: whatever bytes a push puts in lanai.yaml, compose.yaml, models.yaml, webui.yaml
or a Modelfile, loading the state ends as valid or as InvalidState (exit code 2) whose
message is one line starting with the file it is about, within bounded memory (the
process's resident peak).

Run with a fixed budget and derandomized, so CI runs the same examples every time. No
deadline: tests do not assert wall-clock times; the work per example is bounded by the
limits in reconciler/desired/bounded.py (test_bounded.py shows each), and an example that did not
end would stop the run.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.errors import ExitCode
from reconciler.desired import bounded
from reconciler.desired.load import InvalidState, load_state

from ..conftest import EXAMPLE_STATE

STATE_FILES = ("lanai.yaml", "compose.yaml", "models.yaml", "webui.yaml")
MODELFILE = "models/helper.Modelfile"
PEAK_GROWTH_KB = 64 * 1024  # how far the process's resident memory may rise in one load

FUZZ = settings(max_examples=100, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example state plus a custom model built from a Modelfile; each example replaces
    one file and puts it back after."""
    target = tmp_path_factory.mktemp("fuzz") / "state"
    shutil.copytree(EXAMPLE_STATE, target)
    (target / "models").mkdir()
    (target / MODELFILE).write_text("FROM phi3:3.8b-mini-4k-instruct-q4_K_M\nSYSTEM You help.\n")
    with (target / "models.yaml").open("a", encoding="utf-8") as handle:
        handle.write(f"  - name: helper:v1\n    modelfile: {MODELFILE}\n")
    load_state(target)  # the starting point is valid
    yield target


def memory_kb() -> tuple[int, int]:
    """(peak, current) resident memory of this process (Linux's VmHWM and VmRSS)."""
    status = Path("/proc/self/status").read_text()
    return (int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)),  # type: ignore[union-attr]
            int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)))  # type: ignore[union-attr]


def check(root: Path, name: str, content: bytes) -> None:
    path = root / name
    original = path.read_bytes()
    path.write_bytes(content)
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from now
    before = memory_kb()[1]
    try:
        load_state(root)
    except InvalidState as exc:
        message = str(exc)
        assert exc.exit_code == ExitCode.INVALID
        assert "\n" not in message and "\r" not in message
        assert exc.problems[0].file and message.startswith(exc.problems[0].file)
    finally:
        path.write_bytes(original)
    assert memory_kb()[0] - before < PEAK_GROWTH_KB


# -- YAML built to reach the corners: anchors, aliases, tags, nesting, sizes --------------

KEYS = ("services", "image", "ports", "environment", "restart", "network_mode", "deploy",
        "resources", "reservations", "devices", "volumes", "healthcheck", "build",
        "compose_file", "secrets", "https", "names", "proxy", "upstream", "backups",
        "service", "security", "sync", "source", "branch", "notify", "urls", "local",
        "name", "modelfile", "context", "budget", "vram", "ollama", "default", "signup",
        "connections", "openai", "knowledge", "files", "presets", "id", "base_model",
        "system", "params", "users", "email", "model_access", "managed", "voice", "rag",
        "open-webui", "proxy", "<<", "? x", "1", "null", "x-\u00e9\u4e2d", "\"a\\nb\"")
SCALARS = ("1", "-1", "0x1F", "1e400", "-.inf", ".nan", "~", "null", "yes", "on", "''",
           "\"\\ud800\"", "2001-13-45", "2024-01-01T00:00:00Z", "127.0.0.1:11434:11434",
           "ollama/ollama:0.24.0", "ollama/ollama", "unless-stopped", "host", "main", "30s",
           "8GiB", "max", "closed", "everyone", "models/helper.Modelfile", "../../etc/passwd",
           "\"\\x00\"", "|\n  block\n", ">-\n  folded\n", "'it''s'", "\"\u202e\"")
TAGS = ("!!python/object:os.system", "!!python/name:os.system", "!!python/object/apply:os.system",
        "!!binary", "!!int", "!!float", "!!bool", "!!timestamp", "!!null", "!!str", "!!set",
        "!!omap", "!!pairs", "!!merge", "!reset", "!override", "!custom",
        "!<tag:yaml.org,2002:python/tuple>")
ANCHORS = ("a", "b", "c")

key = st.one_of(st.sampled_from(KEYS), st.text(max_size=8).map(json.dumps))
scalar = st.one_of(st.sampled_from(SCALARS), st.integers().map(str),
                   st.text(max_size=12).map(json.dumps))
leaf = st.one_of(scalar, st.tuples(st.sampled_from(TAGS), scalar).map(" ".join),
                 st.sampled_from(ANCHORS).map(lambda name: f"*{name}"))


def _containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(st.tuples(key, children), max_size=4)
    return st.one_of(
        st.lists(children, max_size=5).map(lambda items: f"[{', '.join(items)}]"),
        pairs.map(lambda items: "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"),
        st.tuples(st.sampled_from(ANCHORS), children).map(lambda p: f"&{p[0]} {p[1]}"),
        st.tuples(st.sampled_from(TAGS), children).map(" ".join),
        st.tuples(st.sampled_from(ANCHORS), pairs).map(
            lambda p: "{<<: *" + p[0] + "".join(f", {k}: {v}" for k, v in p[1]) + "}"),
    )


value = st.recursive(leaf, _containers, max_leaves=25)


def alias_bomb(levels: int) -> str:
    lines = ["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{n}: &x{n} [{', '.join([f'*x{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines)


special = st.one_of(
    st.integers(1, 12).map(alias_bomb),
    st.integers(1, 3000).map(lambda n: "x: " + "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: "x: " + "{a: " * n + "1" + "}" * n),
    st.sampled_from(["x: &x [*x]", "x: &x {<<: *x}", "&x [*x, *x]", "? &k [*k]\n: 1",
                     "x: &a 1\n" + "\n".join(f"y{i}: *a" for i in range(150))]),
    # Sizes at the limits (test_bounded.py has the largest ones that still load).
    st.sampled_from([1000, 100_000, bounded.MAX_FILE_BYTES + 1]).map(
        lambda n: "x: \"" + "x" * n + "\""),
    st.sampled_from([1000, bounded.MAX_YAML_NODES + 1]).map(
        lambda n: "x: [" + ",".join(["1"] * n) + "]"),
)
document = st.one_of(
    st.lists(st.tuples(key, value), max_size=6).map(
        lambda items: "\n".join(f"{k}: {v}" for k, v in items)),
    value,
    special,
    st.tuples(st.lists(st.tuples(key, value), max_size=3), special).map(
        lambda p: "\n".join(f"{k}: {v}" for k, v in p[0]) + "\n" + p[1]),
)


@FUZZ
@given(name=st.sampled_from(STATE_FILES), content=st.binary(max_size=600))
def test_any_bytes_in_a_state_file(root: Path, name: str, content: bytes) -> None:
    check(root, name, content)


@FUZZ
@given(name=st.sampled_from(STATE_FILES), text=document)
def test_yaml_with_aliases_tags_nesting_and_sizes(root: Path, name: str, text: str) -> None:
    check(root, name, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(name=st.sampled_from(STATE_FILES), line=st.integers(0, 200), text=document)
def test_yaml_spliced_into_the_example_files(root: Path, name: str, line: int,
                                             text: str) -> None:
    """Keeps most of a valid file, so the checks after parsing (compose rules, models
    against compose, webui names) meet odd values too."""
    rows = (EXAMPLE_STATE / name).read_text(encoding="utf-8").splitlines()
    rows.insert(min(line, len(rows)), text)
    check(root, name, "\n".join(rows).encode("utf-8", "surrogatepass"))


SERVICE_KEYS = ("image", "ports", "environment", "restart", "network_mode", "deploy", "build",
                "volumes", "healthcheck", "labels", "command")
IMAGES = ("ollama/ollama:0.24.0", "ollama/ollama", "ghcr.io/open-webui/open-webui:v0.6.5",
          "caddy:2.8", "x:latest")
service = st.tuples(st.sampled_from(IMAGES),
                    st.lists(st.tuples(st.sampled_from(SERVICE_KEYS), st.one_of(scalar, value)),
                             max_size=4)).map(
    lambda p: "{image: " + p[0] + "".join(f", {k}: {v}" for k, v in p[1]) + "}")
compose_doc = st.lists(st.tuples(st.sampled_from(("ollama", "open-webui", "proxy", "x")),
                                 st.one_of(service, value)), min_size=1, max_size=3).map(
    lambda items: "services:\n" + "".join(f"  {k}: {v}\n" for k, v in dict(items).items()))


@FUZZ
@given(text=compose_doc)
def test_compose_files_with_odd_values_where_lanai_reads(root: Path, text: str) -> None:
    """Services with the keys lanai's own rules read (ports, environment, deploy, ...)
    holding any value: a problem naming the key, never a crash."""
    check(root, "compose.yaml", text.encode("utf-8", "surrogatepass"))


WORDS = ("FROM", "from", "PARAMETER", "SYSTEM", "TEMPLATE", "ADAPTER", "LICENSE", "MESSAGE",
         "RENDERER", "PARSER", "REQUIRES", "#", "FROMX", "")
ARGS = ("phi3:3.8b-mini-4k-instruct-q4_K_M", "./weights.gguf", "../../etc/passwd", "/dev/zero",
        "num_ctx 4096", "num_ctx x", "stop <|end|>", "top_p nan", "use_mmap maybe", "user hi",
        "robot hi", '"""', '"""never closed', '"quoted"', '"', "a b c", "",
        'num_ctx """4\n096"""', '"""a\nb c"""')
modelfile_line = st.one_of(
    st.tuples(st.sampled_from(WORDS), st.sampled_from(ARGS)).map(" ".join),
    st.text(max_size=20),
)
modelfile = st.one_of(
    st.lists(modelfile_line, max_size=12).map("\n".join),
    st.integers(1, 50_000).map(lambda n: 'FROM phi3:3.8b-mini-4k-instruct-q4_K_M\nSYSTEM """'
                               + "\nline" * n),
    st.just("FROM phi3:3.8b-mini-4k-instruct-q4_K_M\n# " + "x" * bounded.MAX_FILE_BYTES),
)


@FUZZ
@given(content=st.one_of(st.binary(max_size=600),
                         modelfile.map(lambda text: text.encode("utf-8", "surrogatepass"))))
def test_any_modelfile(root: Path, content: bytes) -> None:
    check(root, MODELFILE, content)
