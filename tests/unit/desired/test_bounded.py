"""Files read from a commit are read in bounded time and memory: YAML alias bombs, aliases
inside their own anchor, deep nesting, huge files and Modelfiles end as one problem line
naming the file and the line, exit code 2 (the bad-config code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode
from reconciler.desired import bounded, yamlpos
from reconciler.desired.load import InvalidState, load_state

from ..conftest import REPO_ROOT


def alias_bomb(levels: int, width: int = 9) -> str:
    """A few hundred bytes that expand to width**levels values ("billion laughs")."""
    lines = [f"x0: &x0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        items = ", ".join([f"*x{level - 1}"] * width)
        lines.append(f"x{level}: &x{level} [{items}]")
    return "\n".join(lines) + "\n"


def problem_of(state_dir: Path) -> str:
    with pytest.raises(InvalidState) as caught:
        load_state(state_dir)
    assert caught.value.exit_code == ExitCode.INVALID
    message = str(caught.value)
    assert "\n" not in message
    return message


def append(state_dir: Path, name: str, text: str) -> int:
    """Append `text` to a file of the state copy; returns the line `text` starts on."""
    path = state_dir / name
    before = path.read_text(encoding="utf-8")
    if not before.endswith("\n"):
        before += "\n"
    path.write_text(before + text, encoding="utf-8")
    return before.count("\n") + 1


def test_an_alias_bomb_in_webui_yaml_is_one_line_naming_the_file_and_line(
        state_dir: Path) -> None:
    start = append(state_dir, "webui.yaml", alias_bomb(9))  # 9**9: 387 million values
    message = problem_of(state_dir)
    line = int(message.split(":")[1])
    assert message.startswith("webui.yaml:")
    assert start <= line < start + 9
    assert "YAML aliases expand to more than" in message
    assert "fix it in the state repo" in message


def test_an_alias_inside_its_own_anchor_is_a_problem_not_a_recursion_error(
        state_dir: Path) -> None:
    start = append(state_dir, "compose.yaml", "x-loop: &x [*x]\n")
    message = problem_of(state_dir)
    assert message.startswith(f"compose.yaml:{start}: ")
    assert "refers to the list or mapping that contains it" in message


def test_a_mapping_that_merges_itself_is_a_problem(state_dir: Path) -> None:
    start = append(state_dir, "models.yaml", "x-loop: &m {<<: *m}\n")
    assert problem_of(state_dir).startswith(f"models.yaml:{start}: ")


def test_more_aliases_than_the_limit_name_the_line_of_the_first_one_over(
        state_dir: Path) -> None:
    lines = ["x-anchor: &a 1"] + [f"x-use{i}: *a" for i in range(bounded.MAX_YAML_ALIASES + 1)]
    start = append(state_dir, "lanai.yaml", "\n".join(lines) + "\n")
    message = problem_of(state_dir)
    assert message.startswith(f"lanai.yaml:{start + bounded.MAX_YAML_ALIASES + 1}: ")
    assert f"too many YAML aliases (limit {bounded.MAX_YAML_ALIASES})" in message


def test_deep_nesting_is_a_problem_not_a_stack_overflow(state_dir: Path) -> None:
    start = append(state_dir, "webui.yaml", "x-deep: " + "[" * 5000 + "]" * 5000 + "\n")
    message = problem_of(state_dir)
    assert message.startswith(f"webui.yaml:{start}: ")
    assert "nested too deeply" in message


def test_nesting_made_deep_by_aliases_is_a_problem(state_dir: Path) -> None:
    # Each anchor is shallow, but each wraps the previous one: 40 * 20 levels once expanded.
    wrap = "[" * 20 + "{}" + "]" * 20
    lines = [f"x0: &x0 {wrap}"]
    for level in range(1, 40):
        lines.append(f"x{level}: &x{level} " + "[" * 19 + f"[*x{level - 1}]" + "]" * 19)
    append(state_dir, "webui.yaml", "\n".join(lines) + "\n")
    assert "nested too deeply once aliases are expanded" in problem_of(state_dir)


def test_too_many_values_is_a_problem(state_dir: Path) -> None:
    values = ", ".join(["1"] * (bounded.MAX_YAML_NODES + 1))
    append(state_dir, "models.yaml", f"x-many: [{values}]\n")
    assert "too many YAML values" in problem_of(state_dir)


def test_a_file_over_the_size_limit_names_the_file(state_dir: Path) -> None:
    append(state_dir, "compose.yaml", "# " + "x" * bounded.MAX_FILE_BYTES + "\n")
    message = problem_of(state_dir)
    assert message.startswith("compose.yaml: the file is larger than 2 MiB")


def test_unsafe_and_impossible_tags_are_one_problem_each(state_dir: Path) -> None:
    start = append(state_dir, "webui.yaml", "x-evil: !!python/name:os.system ''\n")
    message = problem_of(state_dir)
    assert message.startswith(f"webui.yaml:{start}: invalid YAML: ")
    with pytest.raises(yamlpos.YamlSyntaxError) as caught:
        yamlpos.load("a:\n  b: !!int twelve\n")
    assert caught.value.line == 2
    with pytest.raises(yamlpos.YamlSyntaxError) as caught:
        yamlpos.load("a: !!bool 1\n")  # found by test_loader_fuzz: a KeyError escaped
    assert str(caught.value) == "invalid YAML: '1' is not a valid !!bool"
    with pytest.raises(yamlpos.YamlSyntaxError):
        yamlpos.load("? [a, b]\n: 1\n")


def test_a_webui_yaml_of_a_few_hundred_kb_still_loads(state_dir: Path) -> None:
    prompt = "You are a patient tutor for a family. " * 200  # 7.6 KB a preset
    presets = [{"id": f"tutor-{i}", "name": f"Tutor {i}", "system": prompt,
                "base_model": "llama3.1:8b-instruct-q4_K_M",
                "params": {"temperature": 0.3, "top_k": 40}} for i in range(60)]
    # JSON is YAML: 450 KB of presets with long system prompts.
    text = json.dumps({"presets": presets}, indent=1)
    assert len(text) > 450_000
    append(state_dir, "webui.yaml", text[1:-1].replace('\n "presets"', "presets", 1) + "\n")
    state = load_state(state_dir)
    assert state.webui is not None and len(state.webui.presets) == 60


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    text = ("x-common: &common {restart: unless-stopped, labels: [a, b]}\n"
            "services:\n  a: {<<: *common, image: x:1}\n  b:\n    <<: *common\n")
    data = yamlpos.load(text).data
    assert data["services"]["b"] == {"restart": "unless-stopped", "labels": ["a", "b"]}


def test_a_modelfile_over_the_size_limit_names_the_modelfile(state_dir: Path) -> None:
    (state_dir / "models").mkdir()
    (state_dir / "models" / "helper.Modelfile").write_text(
        "FROM phi3:mini\n# " + "x" * bounded.MAX_FILE_BYTES + "\n")
    (state_dir / "models.yaml").write_text(
        "local:\n  - phi3:mini\n  - name: helper:v1\n    modelfile: models/helper.Modelfile\n")
    message = problem_of(state_dir)
    assert message.startswith("models/helper.Modelfile: the file is larger than 2 MiB")


def test_a_modelfile_with_a_never_closed_quote_over_many_lines_is_one_problem() -> None:
    from reconciler.desired import modelfile

    text = 'FROM llama3.1\nSYSTEM """\n' + "a line of the prompt\n" * 50_000
    with pytest.raises(modelfile.ModelfileError) as caught:
        modelfile.parse(text)
    assert caught.value.line == 2 and "never closed" in caught.value.message
    done = modelfile.parse('FROM x\nSYSTEM """a\n\nb """  \nPARAMETER top_k 3\n')
    assert done.system == "a\n\nb " and done.parameters == {"top_k": 3}


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) across exec.
RSS_SCRIPT = """
import re, sys
from pathlib import Path
from reconciler.desired.load import InvalidState, load_state
try:
    load_state(Path(sys.argv[1]))
except InvalidState as exc:
    print(exc, file=sys.stderr)
status = Path("/proc/self/status").read_text()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def test_loading_an_alias_bomb_keeps_the_process_under_100_mb(state_dir: Path) -> None:
    """The peak resident memory of a fresh process that loads the bomb (the daemon's was
    921 MB for 9**7 values, and nine times that one level deeper)."""
    append(state_dir, "webui.yaml", alias_bomb(7))
    result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(state_dir)],
                            capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "YAML aliases expand to more than" in result.stderr
    assert int(result.stdout.strip()) < 100


@pytest.mark.parametrize(("service", "key_path"), [
    ("{image: ollama/ollama:0.24.0, ports: 1}", "services.ollama.ports"),
    ("{image: ollama/ollama:0.24.0, environment: 5}", "services.ollama.environment"),
    ("{image: [ollama/ollama], restart: always}", "services.ollama.image"),
    ("{image: x:1, deploy: {resources: {reservations: {devices: [1]}}}}",
     "services.ollama.deploy.resources.reservations.devices[0]"),
    ("just-a-string", "services.ollama"),
])
def test_a_compose_value_of_the_wrong_type_where_lanai_reads_is_a_problem(
        state_dir: Path, service: str, key_path: str) -> None:
    """Found by test_loader_fuzz: these crashed lanai's own compose and models checks."""
    (state_dir / "compose.yaml").write_text(f"services:\n  ollama: {service}\n")
    (state_dir / "models.yaml").write_text("ollama: {service: ollama}\nlocal: []\n")
    (state_dir / "webui.yaml").unlink()
    (state_dir / "lanai.yaml").write_text("https: null\n")
    assert problem_of(state_dir).startswith(f"compose.yaml:2: {key_path}: ")


def test_values_and_keys_over_several_lines_are_quoted_on_one_line(state_dir: Path) -> None:
    (state_dir / "helper.Modelfile").write_text('FROM phi3:mini\nPARAMETER num_ctx """4\n096"""\n')
    (state_dir / "models.yaml").write_text(
        "local:\n  - phi3:mini\n  - name: helper:v1\n    modelfile: helper.Modelfile\n")
    assert problem_of(state_dir).startswith(
        "helper.Modelfile:2: parameter num_ctx must be a whole number, not '4\\n096'")
    (state_dir / "models.yaml").write_text("local: [phi3:mini]\n")
    append(state_dir, "webui.yaml", '"x\\ny": 1\n')
    assert "x\\ny: unknown key" in problem_of(state_dir)


def test_a_models_lock_over_the_size_limit_is_a_lock_problem(state_dir: Path) -> None:
    from reconciler.models import lock as models_lock
    from reconciler.models.fit import fit_directory

    with (state_dir / "models.lock").open("a", encoding="utf-8") as handle:
        handle.write("# " + "x" * bounded.MAX_FILE_BYTES + "\n")
    with pytest.raises(models_lock.LockError, match="larger than 2 MiB"):
        models_lock.read(state_dir / "models.lock")
    state = load_state(state_dir)
    assert state.models is not None
    report = fit_directory(state_dir, state.models)
    assert any(p.startswith("models.lock: the file is larger than") for p in report.problems)
