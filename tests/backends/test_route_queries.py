"""Route look-ups cost the same few queries whatever the registry's size; a 304 builds nothing."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backends import selectors
from backends.models import LLMBackend
from backends.services import backend_set_fallbacks, backends_set_enabled


@pytest.fixture
def client(api_as: Any, service_key: str) -> Any:
    return api_as(service_key)


def _registry(make_entry: Any, size: int) -> None:
    """size entries, each falling back to the next two (a chain as long as the registry)."""
    for i in reversed(range(size)):
        make_entry(f"m{i}", fallbacks=[f"m{j}" for j in (i + 1, i + 2) if j < size])


def _queries(client: Any, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("path", ["/api/routes", "/api/route/m0"])
def test_the_queries_do_not_grow_with_the_registry(client: Any, make_entry: Any, path: str) -> None:
    _registry(make_entry, 1)
    client.get(path)  # the key's first use writes its last_used_at: not a route query
    small = _queries(client, path)
    LLMBackend.objects.all().delete()
    _registry(make_entry, 20)
    assert _queries(client, path) == small
    assert len(client.get("/api/route/m0").json()["targets"]) == 20


def test_a_long_chain_is_followed_in_order(client: Any, make_entry: Any) -> None:
    _registry(make_entry, 5)
    targets = client.get("/api/route/m0").json()["targets"]
    assert [t["model_name"] for t in targets] == ["m0", "m1", "m2", "m3", "m4"]


@pytest.mark.parametrize("path", ["/api/routes", "/api/route/m0"])
def test_a_304_does_not_build_the_body(
    client: Any, make_entry: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    _registry(make_entry, 3)
    etag = client.get(path)["ETag"]
    built: list[Any] = []
    real = selectors.route_for_entry
    monkeypatch.setattr(selectors, "route_for_entry", lambda *a: built.append(a) or real(*a))
    assert client.get(path, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert built == []
    assert client.get(path).status_code == 200
    assert built  # the spy does see a body being built


def test_the_etag_changes_with_anything_a_route_shows(
    client: Any, make_entry: Any, settings: Any
) -> None:
    _registry(make_entry, 3)
    seen = {client.get("/api/route/m0")["ETag"]}

    def changed() -> bool:
        etag = client.get("/api/route/m0")["ETag"]
        fresh = etag not in seen
        seen.add(etag)
        return fresh

    m0 = LLMBackend.objects.get(model_name="m0")
    backend_set_fallbacks(entry=m0, model_names=["m2"])
    assert changed()
    backends_set_enabled(entries=LLMBackend.objects.filter(model_name="m2"), enabled=False)
    assert changed()
    LLMBackend.objects.filter(model_name="m1").update(health="down")  # as a probe writes it
    assert changed()
    LLMBackend.objects.filter(model_name="m1").delete()
    assert changed()
    settings.ATHENA_DEFAULT_OLLAMA_URL = "http://127.0.0.2:11434"
    assert changed()
    assert not changed()  # and nothing else moves it
