"""The schema of `lanai.yaml`, lanai's own settings in the state repo.

Every model forbids unknown keys: a typo must be an error, not a silently
ignored setting. Field descriptions double as the configuration reference.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from .durations import parse_duration

Seconds = Annotated[float, BeforeValidator(parse_duration)]

SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    branch: str = Field("main", description="The branch of the state repo the server follows.")
    poll_interval: Seconds = Field(
        60.0, ge=5, description="How often the server fetches the repo (a push also pokes it).")


class HealLimit(Strict):
    restarts: int = Field(3, ge=1, description="At most this many heals of one service ...")
    window: Seconds = Field(600.0, ge=10, description="... within this window.")


class Retry(Strict):
    initial: Seconds = Field(10.0, ge=1, description="First wait after a transient failure.")
    max: Seconds = Field(300.0, ge=1, description="Longest wait between retries.")


class Sync(Strict):
    self_heal: bool = Field(
        True, description="Restore containers that were stopped, removed or turned unhealthy.")
    prune: bool = Field(
        True, description="Remove containers of services that were deleted from compose.yaml.")
    health_timeout: Seconds = Field(
        300.0, ge=5, description="How long a deploy waits for services to turn healthy.")
    heal_limit: HealLimit = Field(default_factory=HealLimit)
    retry: Retry = Field(default_factory=Retry)


class Security(Strict):
    allow_ollama_on_lan: bool = Field(
        False, description="Allow compose.yaml to publish Ollama's port beyond 127.0.0.1; "
        "Ollama has no authentication.")
    require_pinned_images: bool = Field(
        True, description="Refuse images without a version tag (or with :latest).")


class LanaiConfig(Strict):
    gpu: Literal["auto", "required", "off"] = Field(
        "auto", description="auto: keep compose.yaml's NVIDIA GPU reservations where the server "
        "has the NVIDIA container runtime, drop them (the stack runs on the CPU) where it does "
        "not; required: fail without it; off: always run on the CPU.")
    project: str = Field("lanai", description="The compose project name on the server.")
    compose_file: str = Field("compose.yaml", description="The compose file, relative to the repo.")
    source: Source = Field(default_factory=Source)
    sync: Sync = Field(default_factory=Sync)
    secrets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per service, the names of the secrets it receives as environment "
        "variables. Values live only in the server's secrets file.")
    security: Security = Field(default_factory=Security)

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not PROJECT_NAME.match(value):
            raise ValueError("use lowercase letters, digits, '-' and '_', starting with a "
                             "letter or digit")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for service, names in value.items():
            for name in names:
                if not SECRET_NAME.match(name):
                    raise ValueError(
                        f"secret name {name!r} of service {service!r} must look like an "
                        "environment variable (A-Z, 0-9, _)")
        return value

    def secret_names(self) -> set[str]:
        return {name for names in self.secrets.values() for name in names}
