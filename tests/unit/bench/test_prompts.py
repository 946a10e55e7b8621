"""reconciler/bench/prompts.py: the prompt set is pinned and shaped as promised."""

from __future__ import annotations

from reconciler.bench.prompts import (
    PROMPT_SET_VERSION,
    PROMPTS,
    options_for,
    prompt_set_digest,
    prompt_text,
)


def test_prompt_set_is_pinned() -> None:
    # Changing a prompt, num_predict or an option makes old runs incomparable:
    # bump PROMPT_SET_VERSION and update this digest together.
    assert (PROMPT_SET_VERSION, prompt_set_digest()) == (
        "1",
        "330318f493cb17bff72ae50eda917bd728f155c29127ac022911ecd9a31ab333",
    )


def test_prompts_have_the_promised_shape() -> None:
    assert list(PROMPTS) == ["short-chat", "long-prompt"]
    assert "\n" not in PROMPTS["short-chat"]
    words = len(PROMPTS["long-prompt"].split())
    # ~1.3 tokens per word: 1100-1400 words is 1450-1850 tokens.
    assert 1100 <= words <= 1400
    assert PROMPTS["long-prompt"].endswith("done in that order.")
    assert options_for("long-prompt") == {"temperature": 0, "seed": 42, "num_predict": 128}


def test_prompt_text_defeats_the_prefix_cache_but_keeps_the_prompt() -> None:
    a, b = prompt_text("long-prompt", "x-1"), prompt_text("long-prompt", "x-2")
    assert a.split("\n")[0] != b.split("\n")[0]  # they differ from the first line on
    assert a.endswith(PROMPTS["long-prompt"]) and b.endswith(PROMPTS["long-prompt"])
