"""The deployment files parse and hang together (docker and launchd are not here to run them)."""

import plistlib
import re
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_runs_every_part_of_athena(compose: dict) -> None:
    assert {"postgres", "redis", "admin", "worker", "beat", "gateway"} <= set(compose["services"])


def test_every_compose_service_has_an_image_or_build_a_command_and_a_healthcheck(
    compose: dict,
) -> None:
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        assert service.get("command"), name
        assert service.get("healthcheck", {}).get("test"), name


def test_compose_dependencies_name_services_that_exist(compose: dict) -> None:
    services = set(compose["services"])
    for name, service in compose["services"].items():
        depends = service.get("depends_on", {})
        for dependency in depends if isinstance(depends, list) else depends.keys():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if isinstance(depends, dict):
                condition = depends[dependency].get("condition")
                assert condition in ("service_started", "service_healthy"), name


def test_compose_volumes_are_declared(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_compose_takes_settings_from_env_and_builds_from_the_repository(compose: dict) -> None:
    admin = compose["services"]["admin"]
    assert admin["env_file"] == "../.env"
    assert (DEPLOY / admin["build"]["context"] / admin["build"]["dockerfile"]).is_file()
    assert "8080" in admin["command"]
    assert "11400" in compose["services"]["gateway"]["command"]


@pytest.mark.parametrize("name", sorted(p.name for p in DEPLOY.glob("*.plist")))
def test_launchd_plists_parse_and_run_something(name: str) -> None:
    with (DEPLOY / name).open("rb") as handle:
        agent = plistlib.load(handle)
    assert agent["Label"] == name.removesuffix(".plist")
    assert agent["ProgramArguments"]
    assert agent["RunAtLoad"] is True


def test_there_are_launchd_agents_for_admin_gateway_and_worker() -> None:
    names = {p.name for p in DEPLOY.glob("*.plist")}
    assert {
        "com.athena.admin.plist",
        "com.athena.gateway.plist",
        "com.athena.worker.plist",
    } <= names


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Parse a systemd unit: sections of keys, each key possibly repeated."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # continuation lines
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("name", ["admin", "worker", "beat", "gateway"])
def test_systemd_units_are_complete(name: str) -> None:
    unit = _unit(DEPLOY / f"athena-{name}.service")
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["ExecStart"][0].startswith("/")
    assert service["EnvironmentFile"] == ["/etc/athena/athena.env"]
    assert service["User"] == ["athena"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_proxy_examples_stream_generations_unbuffered() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_buffering off;" in nginx
    assert "api/generate|api/chat|v1/" in nginx
    assert "X-Forwarded-Proto $scheme" in nginx
    assert "ssl_certificate " in nginx
    assert nginx.count("{") == nginx.count("}")
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert "@streaming path /api/generate /api/chat /v1/*" in caddy
    assert "flush_interval -1" in caddy
    assert caddy.count("{") == caddy.count("}")


def test_the_production_env_example_sets_what_production_requires() -> None:
    keys = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "env.production.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert {
        "ATHENA_DEBUG",
        "ATHENA_SECRET_KEY",
        "ATHENA_ALLOWED_HOSTS",
        "POSTGRES_PASSWORD",
        "ATHENA_PROXY_SSL_HEADER",
        "ATHENA_SERVICE_KEY",
    } <= keys


def test_env_example_documents_every_setting_read_from_the_environment() -> None:
    root = DEPLOY.parent
    settings = (root / "athena_admin" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|float|list)\(\s*"([A-Z0-9_]+)"', settings))
    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (root / ".env.example").read_text(), re.M)
    )
    assert read, "no settings found: has settings.py stopped using athena_admin.env?"
    assert read <= documented, f"missing from .env.example: {sorted(read - documented)}"
