"""`manage.py check --deploy --fail-level WARNING` passes with production settings."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "ATHENA_DEBUG": "false",
    "ATHENA_SECRET_KEY": secrets.token_urlsafe(50),
    "ATHENA_ALLOWED_HOSTS": "athena.example",
    "ATHENA_CSRF_TRUSTED_ORIGINS": "https://athena.example",
    "ATHENA_SITE_URL": "https://athena.example",
    "ATHENA_PROXY_SSL_HEADER": "X-Forwarded-Proto",
}


def _check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "athena_admin.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check() -> None:
    result = _check(**PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_fails_when_the_proxy_header_is_missing() -> None:
    env = {**PRODUCTION, "ATHENA_PROXY_SSL_HEADER": ""}
    result = _check(**env)
    assert result.returncode != 0
    assert "identity.W004" in result.stderr


def test_it_fails_when_sso_is_half_configured() -> None:
    result = _check(**PRODUCTION, ATHENA_OIDC_CLIENT_ID="athena")
    assert result.returncode != 0
    assert "identity.E001" in result.stderr
    assert "ATHENA_OIDC_TOKEN_ENDPOINT" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts() -> None:
    result = _check(**{**PRODUCTION, "ATHENA_ALLOWED_HOSTS": ""})
    assert result.returncode != 0
    assert "ATHENA_ALLOWED_HOSTS must be set" in result.stderr
