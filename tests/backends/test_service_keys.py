"""API keys: shown once, stored hashed, revocable, last use recorded."""

import hashlib
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backends.models import ServiceKey
from backends.services import service_key_create, service_keys_revoke


def test_only_the_hash_is_stored(db: None) -> None:
    key, raw = service_key_create(name="svc")
    stored = ServiceKey.objects.get(pk=key.pk)
    assert raw not in {stored.key_hash, stored.prefix, stored.name}
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()


def test_both_headers_work_and_last_use_is_recorded(api: Any, make_entry: Any) -> None:
    make_entry("m")
    key, raw = service_key_create(name="svc")
    assert key.last_used_at is None
    assert api.get("/api/route/m", HTTP_X_API_KEY=raw).status_code == 200
    assert api.get("/api/route/m", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),
        lambda k: k + "x",
        lambda k: "athk_nothing_here",
    ],
)
def test_a_wrong_key_is_a_401(api: Any, db: None, mangle: Any) -> None:
    _, raw = service_key_create(name="svc")
    response = api.get("/api/routes", HTTP_X_API_KEY=mangle(raw))
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or revoked API key."


def test_a_revoked_key_stops_working_at_once(api: Any, db: None) -> None:
    key, raw = service_key_create(name="svc")
    assert api.get("/api/routes", HTTP_X_API_KEY=raw).status_code == 200
    service_keys_revoke(keys=ServiceKey.objects.filter(pk=key.pk))
    assert api.get("/api/routes", HTTP_X_API_KEY=raw).status_code == 401


def test_the_command_prints_the_key_once(api: Any, operator: Any) -> None:
    out, err = StringIO(), StringIO()
    call_command("create_service_key", "cli", "--user", operator.username, stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert raw.startswith("athk_")
    assert "only its hash is kept" in err.getvalue()
    assert ServiceKey.objects.get(name="cli").owner == operator
    assert api.get("/api/llm-backends", HTTP_X_API_KEY=raw).status_code == 200


def test_the_command_refuses_an_unknown_user(db: None) -> None:
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_service_key", "cli", "--user", "ghost")
