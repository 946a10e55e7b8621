"""The schema of `models.yaml`: the local models, their context, and the VRAM budget.

Kept apart from `lanai.yaml` so a server template (CPU-only, 8 GB, 12 GB ...)
is one file that bootstrap can drop in, and a model change is a small diff.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from reconciler.core.sizes import parse_size
from reconciler.desired.lanai_yaml import Seconds, Strict

MODELS_FILE = "models.yaml"
OLLAMA_NAME = re.compile(r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9][A-Za-z0-9._-]*$")


def _size(value: Any) -> Any:
    if value == "auto":
        return value
    return parse_size(value)


Bytes = Annotated[int, BeforeValidator(parse_size)]
BytesOrAuto = Annotated[int | Literal["auto"], BeforeValidator(_size)]


class Budget(Strict):
    vram: BytesOrAuto = Field(
        "auto", description="The GPU memory models may use: a size such as 8GiB, or auto for "
        "what nvidia-smi reports on the server (an offline `lanai plan` reads it from "
        "models.lock). With no GPU, models run on the CPU and no budget applies.")
    keep_free: Bytes = Field(
        512 * 1024**2, ge=0, description="GPU memory left for everything else (a desktop, "
        "another program).")
    max_loaded: int = Field(
        1, ge=1, le=8, description="How many models Ollama keeps loaded at once "
        "(OLLAMA_MAX_LOADED_MODELS); each must fit the budget beside the default model.")


class OllamaSettings(Strict):
    service: str | None = Field(
        None, description="The compose service that runs Ollama (default: the one whose image "
        "is ollama/ollama).")
    flash_attention: bool = Field(
        True, description="OLLAMA_FLASH_ATTENTION: less memory for long contexts; needed for "
        "a quantized KV cache.")
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(
        "q8_0", description="OLLAMA_KV_CACHE_TYPE: q8_0 halves the cache against f16 at a "
        "negligible quality cost; q4_0 quarters it.")
    parallel: int = Field(
        1, ge=1, le=16, description="OLLAMA_NUM_PARALLEL: requests one model serves at once; "
        "each gets its own KV cache, so the context that fits shrinks with it.")
    keep_alive: str = Field(
        "30m", description="OLLAMA_KEEP_ALIVE: how long an idle model stays loaded "
        "(a duration, or -1 for ever).")
    context_length: int | None = Field(
        None, ge=256, description="OLLAMA_CONTEXT_LENGTH: the context of models not declared "
        "here (pulled by hand); declared models get their own.")

    def environment(self, max_loaded: int) -> dict[str, str]:
        """The Ollama server settings, as environment variables of its container."""
        env = {
            "OLLAMA_FLASH_ATTENTION": "1" if self.flash_attention else "0",
            "OLLAMA_KV_CACHE_TYPE": self.kv_cache_type,
            "OLLAMA_NUM_PARALLEL": str(self.parallel),
            "OLLAMA_MAX_LOADED_MODELS": str(max_loaded),
            "OLLAMA_KEEP_ALIVE": self.keep_alive,
        }
        if self.context_length:
            env["OLLAMA_CONTEXT_LENGTH"] = str(self.context_length)
        return env


class ModelEntry(Strict):
    name: str = Field(description="The Ollama name with an explicit tag, e.g. "
                      "llama3.1:8b-instruct-q4_K_M.")
    context: int | Literal["max"] = Field(
        "max", description="num_ctx for this model: a number of tokens, or max for the largest "
        "that keeps it entirely on the GPU.")
    quantization: str | None = Field(
        None, description="The quantization the tag must have (e.g. Q4_K_M); checked after the "
        "pull against what Ollama reports.")
    follow: bool = Field(
        False, description="Re-pull the tag when its digest changes upstream (checked every "
        "follow_interval). Off: the model stays at the digest first pulled.")
    allow_cpu: bool = Field(
        False, description="The model may run partly on the CPU when it does not fit the "
        "budget (slower); otherwise a spill fails validation.")
    place: Annotated[list[str] | None, BeforeValidator(_place)] = Field(
        None, description="Swarm mode: the servers that hold this model, by name (box-b) or "
        "node label (label:size=big), one or a list. Unset: every server that runs Ollama. "
        "(Not `on`: YAML reads on as true.)")
    modelfile: str | None = Field(
        None, description="A custom model: the path of its Modelfile in this repo. It is "
        "created on the server (FROM a model declared here, or a GGUF file in the repo) and "
        "re-created when the Modelfile or its files change.")

    @field_validator("name")
    @classmethod
    def _tagged(cls, value: str) -> str:
        if not OLLAMA_NAME.match(value):
            raise ValueError("name a model with an explicit tag, e.g. "
                             "llama3.1:8b-instruct-q4_K_M")
        if value.endswith(":latest"):
            raise ValueError(":latest changes under you; name the tag with its size and "
                             "quantization, e.g. llama3.1:8b-instruct-q4_K_M")
        return value

    @field_validator("place")
    @classmethod
    def _place_entries(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty place puts the model nowhere; name a server, or remove "
                             "place for every server")
        for entry in value or []:
            if entry.startswith("label:") and "=" not in entry:
                raise ValueError(f"{entry!r}: write a label as label:KEY=VALUE, e.g. "
                                 "label:size=big")
        return value

    @field_validator("context")
    @classmethod
    def _context(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 256:
            raise ValueError("a context under 256 tokens cannot hold a chat")
        return value


def _place(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _entry(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


Entry = Annotated[ModelEntry, BeforeValidator(_entry)]


class ModelsConfig(Strict):
    default: str | None = Field(
        None, description="The model kept warm (loaded after every change, so the first chat "
        "does not wait) and sized first.")
    prune: bool = Field(
        True, description="Delete models lanai pulled or created that are no longer listed. "
        "Models pulled by hand are never deleted.")
    follow_interval: Seconds = Field(
        86400.0, ge=300, description="How often models with follow: true are checked upstream.")
    disk_keep_free: Bytes = Field(
        2 * 1024**3, ge=0, description="A pull is refused when it would leave less than this "
        "free on Ollama's volume.")
    budget: Budget = Field(default_factory=Budget)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    local: list[Entry] = Field(
        default_factory=list, description="The models on the server: pulled from the Ollama "
        "library, or created from a Modelfile.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelsConfig:
        names = [m.name for m in self.local]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{', '.join(duplicates)} listed more than once")
        if self.default is not None and self.default not in names:
            raise ValueError(f"default {self.default!r} is not one of the models under local")
        return self

    def entry(self, name: str) -> ModelEntry | None:
        return next((m for m in self.local if m.name == name), None)

    @property
    def pulled(self) -> list[ModelEntry]:
        return [m for m in self.local if m.modelfile is None]

    @property
    def custom(self) -> list[ModelEntry]:
        return [m for m in self.local if m.modelfile is not None]
