"""The bench's fixed, versioned prompt set: the texts, generation options and a digest.

Runs are compared only within one PROMPT_SET_VERSION; a test pins the digest so that a
silent edit of a prompt or an option fails.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

# Bump when a prompt, num_predict or an option changes: runs are compared only
# within one version (tests pin a digest of the set so a silent edit fails).
PROMPT_SET_VERSION = "1"

SHORT_CHAT = "Write a short story about a lighthouse keeper who repairs an old radio."

# Our own text (a run-of-river hydro plant's operating notes), cycled into a
# long prompt. Content barely matters for speed; length does.
_LONG_SECTIONS: tuple[tuple[str, str], ...] = (
    (
        "Intake and screens",
        "Water enters the plant through a concrete intake set a little upstream of the weir. "
        "A coarse trash rack of steel bars, spaced about ten centimetres apart, keeps out "
        "branches and debris carried by the river, and a finer screen behind it stops leaves "
        "and smaller floating material. Both racks are cleaned by a rake that runs on a timer "
        "and also whenever the level difference across the screen rises above a threshold, "
        "because a clogged screen starves the turbine and wastes head. In autumn the rake may "
        "run every hour. Operators record the differential level each shift, inspect the rake "
        "chain weekly and check that the fish bypass channel beside the intake is open.",
    ),
    (
        "Penstock",
        "From the intake a buried steel penstock carries the water down to the powerhouse, "
        "falling about forty metres over six hundred metres of length. The penstock must never "
        "be emptied or filled quickly: a sudden change in flow creates a pressure wave, water "
        "hammer, that can split a weld or lift a pipe from its supports. For this reason the "
        "inlet valve opens in two stages, first a small bypass valve that fills the pipe "
        "slowly and lets trapped air escape through the vents at the high points, then the "
        "main butterfly valve once the pressures on both sides are equal. Vent valves are "
        "tested every quarter, and the anchor blocks are inspected for cracks after a flood.",
    ),
    (
        "Turbine and governor",
        "The turbine is a horizontal Francis unit rated at about four hundred kilowatts. Its "
        "speed is held constant by a governor that moves the guide vanes: when the electrical "
        "load rises, the speed starts to fall, and the governor opens the vanes to admit more "
        "water. Because the water column in the penstock has inertia, the governor cannot "
        "react too fast without causing pressure swings, so its gains are a compromise between "
        "steady pressure and tight frequency control. The bearings are lubricated by an oil "
        "system with two pumps, one running and one in standby; the standby pump starts by "
        "itself if the oil pressure drops, and a trip stops the unit if both pumps fail.",
    ),
    (
        "Generator and grid",
        "The synchronous generator is connected to the regional grid through a step-up "
        "transformer and a circuit breaker. Before the breaker may close, the synchronizing "
        "relay checks that the voltage, frequency and phase angle of the generator match the "
        "grid within narrow limits; closing out of phase would put a violent torque on the "
        "shaft. Once connected, the grid holds the frequency and the governor controls power "
        "instead, following a set point from the control room or a level controller that keeps "
        "the headpond at its target height. Protection relays trip the breaker on overcurrent, "
        "earth fault, reverse power and loss of excitation, and every trip is logged.",
    ),
    (
        "Monitoring",
        "Every sensor in the plant reports to a small controller that writes one record per "
        "second: river level, headpond level, penstock pressure, guide vane position, speed, "
        "bearing temperatures, vibration, active and reactive power. The records are kept for "
        "a year at full resolution and as hourly averages for ten years. Alarms have two "
        "levels, a warning that asks for attention within the shift and a trip that stops the "
        "unit at once. A warning that repeats is a symptom, not noise: a bearing that runs two "
        "degrees warmer each week usually announces a failing oil cooler long before it trips, "
        "and the trend is visible only to someone who looks at it.",
    ),
    (
        "Floods and shutdown",
        "When the river rises above the flood threshold, the plant is shut down in a fixed "
        "order. The unit is unloaded gradually, the breaker opens at low power, the guide "
        "vanes close, and the main inlet valve closes last and slowly, so that the penstock "
        "stays full. The intake gates are then lowered to keep sediment out of the waterway, "
        "and the spillway gates are opened according to the table posted in the control room. "
        "After the flood nothing restarts until the intake has been inspected, the racks "
        "cleared, the sediment trap flushed and the vents checked; the restart is then the "
        "normal start sequence, with the penstock filled slowly.",
    ),
)

# About 1.3 Llama-3 tokens per English word: ~1250 words is ~1650 tokens, which
# with 128 generated tokens still fits a 2048-token context (older defaults).
LONG_PROMPT_WORDS = 1250


def _build_long_prompt(target_words: int = LONG_PROMPT_WORDS) -> str:
    head = (
        "Below are the operating notes of a small run-of-river hydroelectric plant, "
        "in numbered parts. Read them, then answer the question at the end."
    )
    question = (
        "Question: explain, step by step, how the operators should restart the plant after "
        "a flood, and why each step is done in that order."
    )
    parts = [head]
    words = len(head.split()) + len(question.split())
    for n, (title, body) in enumerate(itertools.cycle(_LONG_SECTIONS), 1):
        section = f"Part {n}: {title}.\n{body}"
        if words + len(section.split()) > target_words:
            break
        parts.append(section)
        words += len(section.split())
    parts.append(question)
    return "\n\n".join(parts)


PROMPTS: dict[str, str] = {
    "short-chat": SHORT_CHAT,
    "long-prompt": _build_long_prompt(),
}
# Both prompts ask for more than this, so every run generates the same count.
NUM_PREDICT: dict[str, int] = {"short-chat": 128, "long-prompt": 128}
# Greedy decoding and a fixed seed: the same tokens each run, comparable runs.
OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 42}
WARMUP_PROMPT = "short-chat"


def options_for(prompt: str) -> dict[str, Any]:
    """The Ollama ``options`` for one prompt of the set."""
    return {**OPTIONS, "num_predict": NUM_PREDICT[prompt]}


def prompt_text(prompt: str, nonce: str) -> str:
    """The text sent for one request: the fixed prompt behind a per-request first line.

    Ollama reuses the KV cache of the longest common prompt prefix, so sending the
    same text twice would evaluate one token the second time and make prompt
    tokens/s meaningless. A different first line defeats the cache and costs a
    handful of tokens.
    """
    return f"Request {nonce}.\n{PROMPTS[prompt]}"


def prompt_set_digest() -> str:
    """A digest of everything that makes runs comparable (pinned by a test)."""
    blob = json.dumps([PROMPTS, NUM_PREDICT, OPTIONS, WARMUP_PROMPT], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
