"""Compose profiles: which services of compose.yaml a deployment holds. Pure.

A service without `profiles:` is always deployed; one with profiles only when
lanai.yaml lists one of them (Compose's own rule for `--profile`).
"""

from __future__ import annotations

import re
from typing import Any

# The Compose specification's pattern for a profile name.
PROFILE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def of(spec: Any) -> list[str]:
    """The profiles a service names (none: it is always active)."""
    found = spec.get("profiles") if isinstance(spec, dict) else None
    return [str(p) for p in found] if isinstance(found, list) else []


def is_active(spec: Any, listed: list[str]) -> bool:
    named = of(spec)
    return not named or any(profile in listed for profile in named)


def active(services: dict[str, Any], listed: list[str]) -> dict[str, Any]:
    return {name: spec for name, spec in services.items() if is_active(spec, listed)}


def inactive(services: dict[str, Any], listed: list[str]) -> dict[str, list[str]]:
    """Services left out of the deployment -> the profiles that would switch them on."""
    return {name: of(spec) for name, spec in services.items() if not is_active(spec, listed)}


def unused(services: dict[str, Any], listed: list[str]) -> list[str]:
    """Listed profiles that no service names (a typo switches nothing on)."""
    named = {profile for spec in services.values() for profile in of(spec)}
    return [profile for profile in listed if profile not in named]
