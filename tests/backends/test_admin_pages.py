"""The operator's admin: pages render, bulk actions work, viewers can only look."""

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from backends.models import FallbackLink, LLMBackend, ServiceKey


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_changelist_shows_the_registry_columns(operator: Any, make_entry: Any) -> None:
    make_entry("phi3:mini-classify", upstream_model="phi3:mini")
    page = signed_in(operator).get("/admin/backends/llmbackend/")
    assert page.status_code == 200
    html = page.content.decode().lower()
    for text in [
        "phi3:mini-classify",
        "phi3:mini",
        "http://127.0.0.1:11434",
        "performance",
        "no calls yet",
        "health",
        'name="viewport"',
        "upstream model",
    ]:
        assert text in html
    search = signed_in(operator).get("/admin/backends/llmbackend/?q=classify&backend_type=ollama")
    assert "phi3:mini-classify" in search.content.decode()


def test_operator_adds_an_entry_and_becomes_its_creator(operator: Any) -> None:
    response = signed_in(operator).post(
        "/admin/backends/llmbackend/add/",
        {
            "model_name": "phi3:mini",
            "backend_type": "ollama",
            "endpoint_url": "http://127.0.0.1:11434",
            "upstream_model": "",
            "enabled": "on",
            "priority": 100,
            "max_tokens": 2048,
            "temperature_default": 0.7,
            "timeout_seconds": 60,
            "description": "",
            "fallback_links-TOTAL_FORMS": 0,
            "fallback_links-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = LLMBackend.objects.get()
    assert (entry.created_by, entry.upstream_model) == (operator, "phi3:mini")


def test_the_admin_form_shows_validation_messages(operator: Any) -> None:
    response = signed_in(operator).post(
        "/admin/backends/llmbackend/add/",
        {
            "model_name": "phi3:mini",
            "backend_type": "ollama",
            "endpoint_url": "http://169.254.169.254",
            "priority": 100,
            "max_tokens": 0,
            "temperature_default": 0.7,
            "timeout_seconds": 60,
            "fallback_links-TOTAL_FORMS": 0,
            "fallback_links-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "never allowed" in html
    assert "greater than or equal to 1" in html
    assert not LLMBackend.objects.exists()


def test_the_admin_form_refuses_a_first_token_deadline_past_the_timeout(operator: Any) -> None:
    form = {
        "model_name": "phi3:mini",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
        "priority": 100,
        "max_tokens": 2048,
        "temperature_default": 0.7,
        "timeout_seconds": 30,
        "first_token_timeout_seconds": 45,
        "fallback_links-TOTAL_FORMS": 0,
        "fallback_links-INITIAL_FORMS": 0,
    }
    response = signed_in(operator).post("/admin/backends/llmbackend/add/", form)
    assert response.status_code == 200
    assert "Must be at most timeout_seconds (30), got 45." in response.content.decode()
    assert not LLMBackend.objects.exists()
    form["first_token_timeout_seconds"] = 10
    response = signed_in(operator).post("/admin/backends/llmbackend/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert LLMBackend.objects.get().first_token_timeout_seconds == 10


def test_the_admin_refuses_a_fallback_cycle(operator: Any, make_entry: Any) -> None:
    a = make_entry("a")
    make_entry("b", fallbacks=["a"])
    b = LLMBackend.objects.get(model_name="b")
    response = signed_in(operator).post(
        f"/admin/backends/llmbackend/{a.pk}/change/",
        {
            "model_name": "a",
            "backend_type": "ollama",
            "endpoint_url": "http://127.0.0.1:11434",
            "upstream_model": "a",
            "enabled": "on",
            "priority": 100,
            "max_tokens": 2048,
            "temperature_default": 0.7,
            "timeout_seconds": 60,
            "description": "",
            "fallback_links-TOTAL_FORMS": 1,
            "fallback_links-INITIAL_FORMS": 0,
            "fallback_links-0-fallback": b.pk,
            "fallback_links-0-position": 0,
        },
    )
    assert response.status_code == 200
    assert "cycle" in response.content.decode()
    assert not FallbackLink.objects.filter(entry=a).exists()


@pytest.mark.parametrize(
    ("action", "enabled"), [("disable_selected", False), ("enable_selected", True)]
)
def test_bulk_enable_and_disable(
    operator: Any, make_entry: Any, action: str, enabled: bool
) -> None:
    entries = [make_entry(n, enabled=not enabled) for n in ("a", "b")]
    response = signed_in(operator).post(
        "/admin/backends/llmbackend/",
        {
            "action": action,
            "_selected_action": [e.pk for e in entries],
        },
    )
    assert response.status_code == 302
    assert set(LLMBackend.objects.values_list("enabled", flat=True)) == {enabled}


def test_operator_deletes_an_entry(operator: Any, make_entry: Any) -> None:
    entry = make_entry("a")
    response = signed_in(operator).post(
        f"/admin/backends/llmbackend/{entry.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not LLMBackend.objects.exists()


def test_viewer_sees_but_cannot_change(viewer: Any, make_entry: Any) -> None:
    entry = make_entry("a")
    client = signed_in(viewer)
    assert client.get("/admin/backends/llmbackend/").status_code == 200
    assert client.get(f"/admin/backends/llmbackend/{entry.pk}/change/").status_code == 200
    assert client.get("/admin/backends/llmbackend/add/").status_code == 403
    assert (
        client.post(f"/admin/backends/llmbackend/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    response = client.post(
        "/admin/backends/llmbackend/",
        {"action": "disable_selected", "_selected_action": [entry.pk]},
    )
    entry.refresh_from_db()
    assert entry.enabled is True
    assert response.status_code in (200, 302)


def test_stranger_is_refused_the_registry(stranger: Any, make_entry: Any) -> None:
    make_entry("a")
    assert signed_in(stranger).get("/admin/backends/llmbackend/").status_code == 403


def test_a_key_made_in_the_admin_is_shown_once_and_works(superuser: Any, api: Any) -> None:
    client = signed_in(superuser)
    response = client.post("/admin/backends/servicekey/add/", {"name": "gateway"}, follow=True)
    html = response.content.decode()
    assert "Copy it now" in html
    raw = html.split("will not be shown again: ")[1].split("<")[0].strip()
    assert api.get("/api/routes", HTTP_X_API_KEY=raw).status_code == 200
    key = ServiceKey.objects.get(name="gateway")
    assert raw not in client.get(f"/admin/backends/servicekey/{key.pk}/change/").content.decode()
    client.post(
        "/admin/backends/servicekey/", {"action": "revoke_selected", "_selected_action": [key.pk]}
    )
    assert api.get("/api/routes", HTTP_X_API_KEY=raw).status_code == 401


def test_operators_cannot_manage_keys(operator: Any) -> None:
    assert signed_in(operator).get("/admin/backends/servicekey/").status_code == 403


def test_the_changelist_shows_performance_in_one_column(operator: Any, make_entry: Any) -> None:
    entry = make_entry("phi3:mini")
    LLMBackend.objects.filter(pk=entry.pk).update(
        avg_tokens_per_sec=42.25, avg_latency_ms=230.4, total_requests=12, total_errors=1
    )
    html = signed_in(operator).get("/admin/backends/llmbackend/").content.decode()
    assert '<td class="field-performance">' in html
    assert ">42.2 tok/s · 230 ms</span><br><small>12 calls, 1 error</small>" in html
    for gone in ("field-tokens_per_sec", "field-latency_ms", "field-total_requests"):
        assert gone not in html


def test_the_add_form_leaves_out_statistics_a_new_entry_cannot_have(operator: Any) -> None:
    html = signed_in(operator).get("/admin/backends/llmbackend/add/").content.decode()
    assert 'name="model_name"' in html and 'name="max_tokens"' in html
    for label in ("Health and performance", "Avg tokens per sec", "Total requests", "History"):
        assert label not in html, label


def test_the_change_form_still_shows_them(operator: Any, make_entry: Any) -> None:
    entry = make_entry("phi3:mini")
    html = signed_in(operator).get(f"/admin/backends/llmbackend/{entry.pk}/change/").content
    assert "Health and performance" in html.decode() and "Total requests" in html.decode()


def test_an_empty_registry_says_how_to_add_the_first_entry(operator: Any, viewer: Any) -> None:
    html = signed_in(operator).get("/admin/backends/llmbackend/").content.decode()
    assert 'id="registry-empty"' in html
    assert 'href="/admin/backends/llmbackend/add/">Add the first one</a>' in html
    assert "manage.py import_registry FILE" in html
    viewing = signed_in(viewer).get("/admin/backends/llmbackend/").content.decode()
    assert "No LLM backends yet." in viewing and "Add the first one" not in viewing


def test_a_search_that_finds_nothing_offers_the_whole_list(operator: Any, make_entry: Any) -> None:
    make_entry("phi3:mini")
    html = signed_in(operator).get("/admin/backends/llmbackend/?q=nothing-like-it").content
    assert 'id="registry-no-match"' in html.decode()
    assert '<a href="?">Show all 1</a>' in html.decode()


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/admin/backends/llmbackend/"])
def test_every_admin_page_is_athenas_with_an_icon_that_exists(operator: Any, path: str) -> None:
    client = signed_in(operator) if path != "/admin/login/" else Client()
    html = client.get(path).content.decode()
    assert '<div id="site-name"><a href="/admin/">Athena</a></div>' in html
    assert "| Athena admin</title>" in html
    assert "Django administration" not in html
    icon = re.search(r'<link rel="icon" href="([^"]+)"', html)
    assert icon and icon.group(1) == "/static/athena/favicon.svg"
    assert finders.find("athena/favicon.svg")


def test_the_index_has_athenas_title(operator: Any) -> None:
    assert (
        "LLM routing: registry and operations"
        in signed_in(operator).get("/admin/").content.decode()
    )


def test_favicon_ico_leads_to_the_icon(db: None) -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/athena/favicon.svg"


def _form(entry: LLMBackend, **changes: Any) -> dict[str, Any]:
    values = {
        "model_name": entry.model_name,
        "backend_type": entry.backend_type,
        "endpoint_url": entry.endpoint_url,
        "upstream_model": entry.upstream_model,
        "enabled": "on",
        "priority": entry.priority,
        "max_tokens": entry.max_tokens,
        "temperature_default": entry.temperature_default,
        "timeout_seconds": entry.timeout_seconds,
        "description": entry.description,
        "fallback_links-TOTAL_FORMS": 0,
        "fallback_links-INITIAL_FORMS": 0,
    }
    return {**values, **changes}


def test_a_rename_in_the_admin_follows_the_same_rule_as_the_api(
    operator: Any, make_entry: Any
) -> None:
    tracked = make_entry("phi3:mini")
    pinned = make_entry("alias", upstream_model="phi3:mini")
    client = signed_in(operator)
    for entry, new_name in ((tracked, "phi3:mini-2"), (pinned, "alias-2")):
        response = client.post(
            f"/admin/backends/llmbackend/{entry.pk}/change/", _form(entry, model_name=new_name)
        )
        assert response.status_code == 302, response.content.decode()[:2000]
    tracked.refresh_from_db()
    pinned.refresh_from_db()
    assert (tracked.model_name, tracked.upstream_model) == ("phi3:mini-2", "phi3:mini-2")
    assert (pinned.model_name, pinned.upstream_model) == ("alias-2", "phi3:mini")


def test_the_admin_saves_a_new_entry_with_its_fallback_chain(
    operator: Any, make_entry: Any
) -> None:
    backup = make_entry("backup")
    form = _form(LLMBackend(model_name="main", backend_type="ollama",
                            endpoint_url="http://127.0.0.1:11434", upstream_model=""))  # fmt: skip
    form.update(
        {
            "fallback_links-TOTAL_FORMS": 1,
            "fallback_links-0-fallback": backup.pk,
            "fallback_links-0-position": 0,
        }
    )
    response = signed_in(operator).post("/admin/backends/llmbackend/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    main = LLMBackend.objects.get(model_name="main")
    assert (main.created_by, main.upstream_model) == (operator, "main")
    assert [link.fallback.model_name for link in FallbackLink.objects.filter(entry=main)] == [
        "backup"
    ]


def test_a_name_taken_while_the_admin_saves_is_an_error_message_not_a_500(
    operator: Any, make_entry: Any
) -> None:
    from django.db.models.signals import pre_save

    def another_operator_takes_the_name(sender: Any, instance: LLMBackend, **kwargs: Any) -> None:
        # Between the form's uniqueness check and the INSERT, as a concurrent save would.
        if instance.pk is None and instance.model_name == "race":
            LLMBackend.objects.bulk_create(
                [LLMBackend(model_name="race", backend_type="ollama",
                            endpoint_url="http://127.0.0.1:1", upstream_model="race")]
            )  # fmt: skip

    form = _form(LLMBackend(model_name="race", backend_type="ollama",
                            endpoint_url="http://127.0.0.1:11434", upstream_model=""))  # fmt: skip
    pre_save.connect(another_operator_takes_the_name, sender=LLMBackend)
    try:
        response = signed_in(operator).post("/admin/backends/llmbackend/add/", form, follow=True)
    finally:
        pre_save.disconnect(another_operator_takes_the_name, sender=LLMBackend)
    assert response.status_code == 200
    assert "Backend for model &#x27;race&#x27; already exists; nothing was saved." in (
        response.content.decode()
    )
    assert LLMBackend.objects.filter(model_name="race").count() == 0  # all rolled back
