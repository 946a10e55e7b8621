"""The types of the compose keys lanai itself reads before `docker compose config` runs.

lanai's own rules (desired.check_compose, check_models, render.gpu_services) read a few
keys of each service; a value of the wrong type there (`ports: 5`) must be a problem
naming its line, not a crash. Types follow the Compose specification.
"""

from __future__ import annotations

from typing import Any

Path_ = tuple[str | int, ...]

_SCALAR = (str, int, float, bool)


def _is_list_of(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, list) and all(isinstance(item, kinds) for item in value)


def shape_problems(services: dict[Any, Any]) -> list[tuple[Path_, str]]:
    """(key path, message) for each value lanai reads that has the wrong type."""
    out: list[tuple[Path_, str]] = []
    for name, spec in services.items():
        base: Path_ = ("services", name)
        if not isinstance(spec, dict):
            out.append((base, "a service must be a mapping"))
            continue
        for key in ("image", "network_mode", "restart"):
            if key in spec and spec[key] is not None and not isinstance(spec[key], _SCALAR):
                out.append(((*base, key), "must be a single value, not a list or mapping"))
        ports = spec.get("ports")
        if ports is not None and not _is_list_of(ports, (*_SCALAR, dict)):
            out.append(((*base, "ports"), "must be a list of port entries"))
        if "profiles" in spec and not _is_list_of(spec["profiles"], (str,)):
            out.append(((*base, "profiles"), "must be a list of profile names"))
        env = spec.get("environment")
        if env is not None and not isinstance(env, dict) and not _is_list_of(env, _SCALAR):
            out.append(((*base, "environment"), "must be a mapping or a list of NAME=value"))
        out += _deploy_problems(spec.get("deploy"), (*base, "deploy"))
    return out


def _deploy_problems(deploy: Any, base: Path_) -> list[tuple[Path_, str]]:
    if deploy is None:
        return []
    steps: list[tuple[str, type]] = [("resources", dict), ("reservations", dict),
                                     ("devices", list)]
    current, path = deploy, base
    if not isinstance(current, dict):
        return [(path, "must be a mapping")]
    for key, kind in steps:
        value = current.get(key)
        if value is None:
            return []
        path = (*path, key)
        if not isinstance(value, kind):
            return [(path, "must be a mapping" if kind is dict else "must be a list")]
        current = value
    for index, device in enumerate(current):
        if not isinstance(device, dict):
            return [((*path, index), "must be a mapping (driver, count, capabilities)")]
        capabilities = device.get("capabilities")
        if capabilities is not None and not isinstance(capabilities, list):
            return [((*path, index, "capabilities"), "must be a list")]
    return []
