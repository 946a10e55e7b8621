"""models.yaml: schema and checks, the fit table, the templates, the lock file, the planner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.desired import load as desired
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.models import lock as models_lock
from reconciler.models.fit import fit_directory
from reconciler.models.memory import ModelFacts
from reconciler.models.plan import (
    LiveModel,
    fit_models,
    fit_problems,
    observed_drift,
    plan_changes,
    plan_pulls,
    resolve_budget,
)

from ..double import load

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = REPO_ROOT / "desired-state" / "templates"
GiB, MiB = 1024**3, 1024**2


DOUBLE = load()


def facts_of(name: str) -> ModelFacts:
    """A model's facts as the reconciler reads them from /api/show of the Ollama double,
    whose catalog carries the published architecture numbers and file sizes."""
    entry = DOUBLE.CATALOG[name]
    show = {"model_info": entry["model_info"], "capabilities": entry["capabilities"],
            "details": {"quantization_level": entry["quantization_level"]}}
    return ModelFacts.from_show(name, show, size=entry["size"], digest="sha256:" + "0" * 64)


def config(text: str) -> ModelsConfig:
    return ModelsConfig.model_validate(yaml.safe_load(text))


def catalog_facts(cfg: ModelsConfig) -> dict[str, ModelFacts]:
    return {m.name: facts_of(m.name) for m in cfg.local if m.name in DOUBLE.CATALOG}


# -- schema and checks ----------------------------------------------------------------


def test_the_example_state_declares_the_briefs_models_for_an_8gb_card(state_dir: Path) -> None:
    state = desired.load_state(state_dir)
    assert state.models is not None
    assert [m.name for m in state.models.local] == [
        "llama3.1:8b-instruct-q4_K_M", "phi3:3.8b-mini-4k-instruct-q4_K_M",
        "deepseek-r1:7b-qwen-distill-q4_K_M", "nomic-embed-text:v1.5"]
    assert state.models.default == "llama3.1:8b-instruct-q4_K_M"
    assert (state_dir / "models.yaml").read_text() == \
        (TEMPLATES / "models-8gb.yaml").read_text()


def test_a_state_without_models_yaml_leaves_ollama_alone(state_dir: Path) -> None:
    (state_dir / "models.yaml").unlink()
    assert desired.load_state(state_dir).models is None


@pytest.mark.parametrize(("text", "where", "words"), [
    ("local:\n  - llama3.1\n", "models.yaml:2: local[0]", "explicit tag"),
    ("local:\n  - name: llama3.1:latest\n", "models.yaml:2: local[0].name", ":latest"),
    ("local:\n  - name: phi3:mini\n    contxt: 4096\n", "models.yaml:3: local[0].contxt",
     "did you mean 'context'"),
    ("budget:\n  vram: eight gigs\n", "models.yaml:2: budget.vram", "size"),
    ("ollama:\n  kv_cache_type: q5_1\n", "models.yaml:2: ollama.kv_cache_type", "q8_0"),
    ("default: phi3:mini\nlocal:\n  - llama3.1:8b\n", "models.yaml", "not one of the models"),
    ("local:\n  - phi3:mini\n  - phi3:mini\n", "models.yaml", "more than once"),
])
def test_bad_models_yaml_names_file_line_key_and_fix(state_dir: Path, text: str, where: str,
                                                     words: str) -> None:
    (state_dir / "models.yaml").write_text(text)
    with pytest.raises(desired.InvalidState) as caught:
        desired.load_state(state_dir)
    messages = [str(p) for p in caught.value.problems]
    assert any(m.startswith(where) and words in m for m in messages), messages


def test_ollama_settings_live_in_one_place(state_dir: Path, edit: Any) -> None:
    edit("compose.yaml", 'OLLAMA_HOST: "0.0.0.0:11434"\n',
         'OLLAMA_HOST: "0.0.0.0:11434"\n      OLLAMA_KV_CACHE_TYPE: "f16"\n')
    with pytest.raises(desired.InvalidState) as caught:
        desired.load_state(state_dir)
    assert "OLLAMA_KV_CACHE_TYPE is set by models.yaml" in str(caught.value)


def test_models_need_a_service_that_runs_ollama(state_dir: Path) -> None:
    (state_dir / "models.yaml").write_text("ollama:\n  service: llm\nlocal:\n  - phi3:mini\n")
    with pytest.raises(desired.InvalidState) as caught:
        desired.load_state(state_dir)
    assert "models.yaml:2: ollama.service: names service 'llm', which is not in compose.yaml" \
        in str(caught.value)


def test_a_custom_model_is_checked_against_its_modelfile(state_dir: Path) -> None:
    (state_dir / "models").mkdir()
    (state_dir / "models" / "helper.Modelfile").write_text(
        "FROM mistral:7b\nSYSTEM You help.\nADAPTER ./missing.gguf\n")
    (state_dir / "models.yaml").write_text(
        "local:\n  - phi3:3.8b-mini-4k-instruct-q4_K_M\n"
        "  - name: helper:v1\n    modelfile: models/helper.Modelfile\n")
    with pytest.raises(desired.InvalidState) as caught:
        desired.load_state(state_dir)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "missing.gguf is not a file in the state repo" in text
    assert "FROM mistral:7b is not one of the models under local" in text


def test_a_modelfile_syntax_error_points_at_its_line(state_dir: Path) -> None:
    (state_dir / "helper.Modelfile").write_text("FROM phi3:mini\nPARAMETR num_ctx 4096\n")
    (state_dir / "models.yaml").write_text(
        "local:\n  - phi3:mini\n  - name: helper:v1\n    modelfile: helper.Modelfile\n")
    with pytest.raises(desired.InvalidState) as caught:
        desired.load_state(state_dir)
    assert str(caught.value.problems[0]).startswith("helper.Modelfile:2:")


# -- fitting --------------------------------------------------------------------------


def test_the_budget_is_the_gpu_less_what_is_kept_free() -> None:
    cfg = config("budget:\n  keep_free: 512MiB\n")
    assert resolve_budget(cfg, 8192 * MiB) == 7680 * MiB
    assert resolve_budget(cfg, None) is None  # no GPU: nothing to fit
    assert resolve_budget(config("budget:\n  vram: 12GiB\n  keep_free: 1GiB\n"), 8 * GiB) \
        == 11 * GiB  # a declared size wins over what the server has


@pytest.mark.parametrize(("template", "card_mib"), [
    ("8gb", 8192), ("12gb", 12288), ("16gb", 16380), ("24gb", 24576)])
def test_every_template_fits_its_card_entirely_on_the_gpu(template: str, card_mib: int) -> None:
    cfg = config((TEMPLATES / f"models-{template}.yaml").read_text())
    facts = catalog_facts(cfg)
    assert set(facts) == {m.name for m in cfg.local}, "the double's catalog lacks a model"
    rows = fit_models(cfg, facts, card_mib * MiB)
    assert fit_problems(rows) == []
    for row in rows:
        assert row.verdict == "fits", (row.name, row.notes)
        # Chat models get a useful context, not the 2048 floor.
        if not row.facts.embedding_only:
            assert row.context >= min(8192, row.facts.context_length), row.name


def test_on_an_8gb_card_llama_gets_over_8k_tokens_beside_the_embedder() -> None:
    cfg = config((TEMPLATES / "models-8gb.yaml").read_text())
    rows = {r.name: r for r in fit_models(cfg, catalog_facts(cfg), 8192 * MiB)}
    llama = rows["llama3.1:8b-instruct-q4_K_M"]
    embed = rows["nomic-embed-text:v1.5"]
    # max_loaded 2: the embedding model's memory comes off the chat model's budget.
    reserve = 457 * MiB  # the CUDA runtime's, paid once for both models
    assert llama.fit.budget == 7680 * MiB - (embed.fit.estimate.total - reserve)
    # Ollama reserves ~68 KiB of q8_0 cache and ~70 KiB of f32 attention scratch per token
    # beside 4.6 GiB of weights: about 12k tokens beside the embedder (17k alone).
    assert 8192 <= llama.context <= 16_384
    assert llama.fit.estimate.total <= llama.fit.budget
    assert rows["phi3:3.8b-mini-4k-instruct-q4_K_M"].context == 4096  # its trained context


def test_a_model_too_big_for_the_card_is_reported_with_its_cpu_share() -> None:
    cfg = config("budget:\n  vram: 4GiB\nlocal:\n  - llama3.1:8b-instruct-q4_K_M\n")
    rows = fit_models(cfg, catalog_facts(cfg), None)
    assert rows[0].verdict == "spills"
    [problem] = fit_problems(rows)
    assert problem.startswith("llama3.1:8b-instruct-q4_K_M needs ")
    assert "% of it would run on the CPU" in problem and "allow_cpu: true" in problem
    allowed = config("budget:\n  vram: 4GiB\nlocal:\n  - name: llama3.1:8b-instruct-q4_K_M\n"
                     "    allow_cpu: true\n")
    assert fit_problems(fit_models(allowed, catalog_facts(allowed), None)) == []


def test_an_asked_context_that_does_not_fit_spills() -> None:
    cfg = config("budget:\n  vram: 8GiB\nlocal:\n  - name: llama3.1:8b-instruct-q4_K_M\n"
                 "    context: 32768\n")
    [row] = fit_models(cfg, catalog_facts(cfg), None)
    assert row.context == 32768 and row.verdict == "spills"
    assert 0 < row.fit.cpu_share < 1


def test_without_a_gpu_models_run_on_the_cpu_with_a_capped_context() -> None:
    cfg = config((TEMPLATES / "models-cpu.yaml").read_text())
    rows = {r.name: r for r in fit_models(cfg, catalog_facts(cfg), None)}
    assert {r.verdict for r in rows.values()} == {"cpu"}
    assert rows["phi3:3.8b-mini-4k-instruct-q4_K_M"].context == 4096
    assert rows["llama3.1:8b-instruct-q4_K_M"].context == 8192


def test_a_model_whose_size_is_unknown_is_said_so() -> None:
    cfg = config("budget:\n  vram: 8GiB\nlocal:\n  - mistral:7b-instruct-q4_K_M\n")
    [row] = fit_models(cfg, {}, None)
    assert row.verdict == "unknown" and "not in models.lock" in row.notes[0]


# -- the lock file and the offline check ------------------------------------------------


def test_the_lock_round_trips_and_rejects_garbage() -> None:
    lock = models_lock.ModelsLock("NVIDIA GeForce RTX 3070", 8192 * MiB,
                                  {"phi3:3.8b-mini-4k-instruct-q4_K_M":
                                   facts_of("phi3:3.8b-mini-4k-instruct-q4_K_M")})
    text = models_lock.dumps(lock)
    assert text.startswith("# Written by lanai")
    assert models_lock.loads(text) == lock
    with pytest.raises(models_lock.LockError, match="version 1"):
        models_lock.loads("models: {}\n")
    with pytest.raises(models_lock.LockError, match="phi3"):
        models_lock.loads("version: 1\nmodels:\n  phi3:mini:\n    size: 1\n")


def test_without_a_lock_a_pull_request_check_says_what_it_could_not_check(
        state_dir: Path) -> None:
    (state_dir / "models.lock").unlink()
    cfg = desired.load_state(state_dir).models
    assert cfg is not None
    report = fit_directory(state_dir, cfg)
    assert report.facts_from == "nowhere" and report.problems == []
    assert any("not checked" in w for w in report.warnings)
    assert any("--vram" in w for w in report.warnings)


def test_the_example_lock_fits_the_example_models_to_an_rtx_3070(state_dir: Path) -> None:
    cfg = desired.load_state(state_dir).models
    assert cfg is not None
    report = fit_directory(state_dir, cfg)
    assert report.facts_from == "models.lock" and report.warnings == []
    assert report.problems == []
    assert report.gpu_name == "NVIDIA GeForce RTX 3070"
    assert report.budget == 7680 * MiB
    assert {r.verdict for r in report.rows} == {"fits"}
    # The example lock carries the same facts the Ollama double serves.
    expected = facts_of("llama3.1:8b-instruct-q4_K_M")
    assert report.rows[0].facts == replace(expected, digest=None)
    # The same models on a 6 GB card: the 7-8B models no longer fit.
    small = fit_directory(state_dir, cfg, vram=6 * GiB)
    assert [p.split(" ")[0] for p in small.problems] == [
        "llama3.1:8b-instruct-q4_K_M", "deepseek-r1:7b-qwen-distill-q4_K_M"]
    assert all("allow_cpu" in p for p in small.problems)


# -- planning ------------------------------------------------------------------------


def live(*names: str, num_ctx: int | None = None) -> dict[str, LiveModel]:
    return {n: LiveModel(n, "sha256:" + n, num_ctx) for n in names}


def test_missing_models_are_pulled_and_followed_ones_rechecked() -> None:
    cfg = config("local:\n  - phi3:mini\n  - name: llama3.1:8b\n    follow: true\n")
    actions = plan_pulls(cfg, live("llama3.1:8b"), follow_due={"llama3.1:8b"})
    assert [(a.kind, a.model) for a in actions] == [("pull", "phi3:mini"),
                                                     ("pull", "llama3.1:8b")]
    assert plan_pulls(cfg, live("phi3:mini", "llama3.1:8b"), follow_due=set()) == []


def test_contexts_are_set_and_only_managed_models_are_pruned() -> None:
    cfg = config("budget:\n  vram: 8GiB\nlocal:\n  - llama3.1:8b-instruct-q4_K_M\n")
    rows = fit_models(cfg, catalog_facts(cfg), None)
    now = live("llama3.1:8b-instruct-q4_K_M", "old:1b", "by-hand:3b")
    actions = plan_changes(cfg, now, rows, managed={"old:1b", "llama3.1:8b-instruct-q4_K_M"},
                           custom_hashes={}, recorded_hashes={})
    assert [(a.kind, a.model) for a in actions] == [("tune", "llama3.1:8b-instruct-q4_K_M"),
                                                     ("remove", "old:1b")]
    assert actions[0].context == rows[0].context
    tuned = live("llama3.1:8b-instruct-q4_K_M", num_ctx=rows[0].context)
    assert plan_changes(cfg, tuned, rows, managed=set(), custom_hashes={},
                        recorded_hashes={}) == []
    no_prune = config("prune: false\nlocal:\n  - llama3.1:8b-instruct-q4_K_M\n")
    assert all(a.kind != "remove" for a in plan_changes(
        no_prune, now, rows, managed={"old:1b"}, custom_hashes={}, recorded_hashes={}))


def test_a_custom_model_is_recreated_only_when_its_sources_change() -> None:
    cfg = config("local:\n  - phi3:mini\n  - name: helper:v1\n    modelfile: helper.Modelfile\n")
    rows = fit_models(cfg, {}, None)
    missing = plan_changes(cfg, live("phi3:mini"), rows, managed=set(),
                           custom_hashes={"helper:v1": "a"}, recorded_hashes={})
    assert [(a.kind, a.reason) for a in missing] == [("create", "not on the server")]
    same = plan_changes(cfg, live("phi3:mini", "helper:v1"), rows, managed=set(),
                        custom_hashes={"helper:v1": "a"}, recorded_hashes={"helper:v1": "a"})
    assert same == []
    changed = plan_changes(cfg, live("phi3:mini", "helper:v1"), rows, managed=set(),
                           custom_hashes={"helper:v1": "b"}, recorded_hashes={"helper:v1": "a"})
    assert [a.reason for a in changed] == ["helper.Modelfile or its files changed"]


def test_what_ollama_reports_after_loading_is_compared_with_the_estimate() -> None:
    assert observed_drift("m", 5 * GiB, 5 * GiB, 5 * GiB, True) is None
    spilled = observed_drift("m", 5 * GiB, 10 * GiB, 5 * GiB, True)
    assert spilled is not None and "50%/50% CPU/GPU" in spilled
    assert "estimated" in (observed_drift("m", 5 * GiB, 7 * GiB, 7 * GiB, True) or "")
    assert observed_drift("m", None, 7 * GiB, 0, False) is None  # CPU server: no split
