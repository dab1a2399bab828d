"""The dashboard: every chain, its health timeline and its last 24 hours, for viewers only."""

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backends.models import Health, HealthCheck, LLMBackend
from backends.rollups import rollup_all
from backends.services import samples_ingest

URL = "/admin/dashboard/"
HOUR = (timezone.now() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def sample(entry: LLMBackend, minute: int, ok: bool = True, **fields: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "entry_id": entry.pk,
        "model": entry.model_name,
        "backend_type": entry.backend_type,
        "endpoint_url": entry.endpoint_url,
        "started_at": HOUR + timedelta(minutes=minute),
        "ok": ok,
        "error_kind": "" if ok else "connect",
        "status_code": 200 if ok else None,
        "latency_ms": 100.0,
        **fields,
    }


@pytest.fixture
def chain(make_entry: Any) -> tuple[LLMBackend, LLMBackend]:
    """phi3:mini on MLX (down) falling back to `backup` on Ollama (healthy), with history."""
    backup = make_entry("backup", endpoint_url="http://127.0.0.1:11500")
    main = make_entry(
        "phi3:mini",
        backend_type="mlx",
        endpoint_url="http://127.0.0.1:11435",
        fallbacks=["backup"],
    )
    LLMBackend.objects.filter(pk=main.pk).update(health=Health.DOWN)
    LLMBackend.objects.filter(pk=backup.pk).update(health=Health.HEALTHY)
    # Two hours ago healthy; the hour after, degraded then down (its worst: down).
    for minute, state in [(10, Health.HEALTHY), (70, Health.DEGRADED), (80, Health.DOWN)]:
        HealthCheck.objects.create(
            entry=main,
            checked_at=HOUR + timedelta(minutes=minute),
            ok=state != Health.DOWN,
            health=state,
        )
    HealthCheck.objects.create(
        entry=backup, checked_at=HOUR + timedelta(minutes=30), ok=True, health=Health.HEALTHY
    )
    samples_ingest(
        samples=[
            sample(main, 1, latency_ms=100.0, tokens_per_sec=10.0),
            sample(main, 2, latency_ms=200.0, tokens_per_sec=20.0),
            sample(main, 3, latency_ms=300.0),
            sample(main, 4, ok=False, latency_ms=5000.0),
            sample(backup, 5, latency_ms=40.0, tokens_per_sec=50.0, fallback=True),
            sample(backup, 6, latency_ms=60.0, tokens_per_sec=70.0, fallback=True),
            # Older than 24 hours: in no figure on the page.
            sample(main, -25 * 60, ok=False),
        ]
    )
    rollup_all()
    return main, backup


def section(html: str, entry: LLMBackend) -> str:
    start = html.index(f'id="entry-{entry.pk}"')
    end = html.find("<section", start)
    return html[start : end if end != -1 else len(html)]


def figure(html: str, css_class: str) -> str:
    match = re.search(rf'class="{css_class}">([^<]*)<', html)
    assert match, css_class
    return match.group(1).strip()


def test_a_viewer_sees_each_chain_in_order_with_types_endpoints_and_health(
    viewer: Any, chain: tuple[LLMBackend, LLMBackend]
) -> None:
    main, _ = chain
    page = signed_in(viewer).get(URL)
    assert page.status_code == 200
    rows = re.findall(
        r'<tr class="target">\s*<td>(\d+)</td>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>'
        r'\s*<td>([^<]+)</td>\s*<td><span class="badge (\w+)">',
        section(page.content.decode(), main),
    )
    assert rows == [
        ("1", "phi3:mini", "mlx", "http://127.0.0.1:11435", "down"),
        ("2", "backup", "ollama", "http://127.0.0.1:11500", "healthy"),
    ]


def test_the_figures_match_hand_computed_ones(
    viewer: Any, chain: tuple[LLMBackend, LLMBackend]
) -> None:
    main, backup = chain
    html = signed_in(viewer).get(URL).content.decode()
    # Last 24 hours: 6 calls, 1 connect error, 2 served by the fallback (the old error is out).
    assert re.search(r'id="total-requests">6<', html)
    assert re.search(r'id="total-errors">1<', html)
    assert re.search(r'id="total-fallbacks">2<', html)
    assert '<span class="error-kind">connect 1</span>' in html

    mine = section(html, main)
    assert figure(mine, "requests") == "4"
    assert figure(mine, "errors") == "1"
    assert "(25.0 %)" in mine
    assert figure(mine, "fallbacks") == "0"
    assert figure(mine, "avg-latency") == "200 ms"  # (100 + 200 + 300) / 3, ok calls only
    assert figure(mine, "p95-latency") == "290 ms"  # 200 + 0.9 * (300 - 200)
    assert figure(mine, "tokens-per-sec") == "15.0"  # (10 + 20) / 2: one call reported none

    theirs = section(html, backup)
    assert figure(theirs, "requests") == "2"
    assert figure(theirs, "fallbacks") == "2"
    assert figure(theirs, "avg-latency") == "50 ms"
    assert figure(theirs, "p95-latency") == "59 ms"  # 40 + 0.95 * 20
    assert figure(theirs, "tokens-per-sec") == "60.0"


def test_the_health_timeline_shows_each_hours_worst_probe(
    viewer: Any, chain: tuple[LLMBackend, LLMBackend]
) -> None:
    main, _ = chain
    mine = section(signed_in(viewer).get(URL).content.decode(), main)
    timeline = mine[mine.index("Health, last 24 hours") :]
    states = re.findall(r"<title>(\w+)</title></rect>", timeline)
    # 24 hourly slots ending with this hour: two hours ago is slot 21.
    assert states == ["unknown"] * 21 + ["healthy", "down", "unknown"]


def test_the_charts_are_server_side_svg_that_fit_a_phone(
    viewer: Any, chain: tuple[LLMBackend, LLMBackend]
) -> None:
    html = signed_in(viewer).get(URL).content.decode()
    assert 'name="viewport"' in html
    assert "svg { max-width: 100%; height: auto; }" in html
    for title in ["Latency per hour", "Tokens/s per hour", "Errors and fallbacks per hour"]:
        assert f'aria-label="{title}' in html
    assert "<script" not in html.split('id="content-main"', 1)[1]


def test_the_page_costs_the_same_queries_for_more_entries(
    viewer: Any, make_entry: Any, chain: tuple[LLMBackend, LLMBackend]
) -> None:
    client = signed_in(viewer)
    client.get(URL)
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    for i in range(5):
        make_entry(f"extra-{i}", fallbacks=["backup"])
    with CaptureQueriesContext(connection) as many:
        assert client.get(URL).status_code == 200
    assert len(many) == len(few)


def test_the_admin_index_links_to_the_dashboard_for_viewers(viewer: Any, stranger: Any) -> None:
    assert f'href="{URL}"' in signed_in(viewer).get("/admin/").content.decode()
    assert f'href="{URL}"' not in signed_in(stranger).get("/admin/").content.decode()


def test_an_empty_registry_renders(viewer: Any) -> None:
    page = signed_in(viewer).get(URL)
    assert page.status_code == 200
    assert "No LLM backends yet." in page.content.decode()


def test_a_stranger_without_the_view_permission_is_refused(stranger: Any) -> None:
    assert signed_in(stranger).get(URL).status_code == 403


def test_anonymous_goes_to_the_login_page(db: None) -> None:
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/admin/login/?next={URL}")
