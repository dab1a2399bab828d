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
            error="timeout" if state == Health.DOWN else "",
        )
    HealthCheck.objects.create(
        entry=backup, checked_at=HOUR + timedelta(minutes=30), ok=True, health=Health.HEALTHY
    )
    samples_ingest(
        samples=[
            sample(main, 1, latency_ms=100.0, tokens_per_sec=10.0, ttft_ms=30.0),
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


def test_the_health_timeline_shows_each_hours_worst_probe_with_its_story_on_hover(
    viewer: Any, chain: tuple[LLMBackend, LLMBackend]
) -> None:
    main, _ = chain
    mine = section(signed_in(viewer).get(URL).content.decode(), main)
    timeline = mine[mine.index("Health, last 24 hours") :]
    states = re.findall(r'<rect class="health-cell" data-state="(\w+)"', timeline)
    # 24 hourly slots ending with this hour: two hours ago is slot 21.
    assert states == ["unknown"] * 21 + ["healthy", "down", "unknown"]
    hovers = re.findall(r"<title>([^<]+)</title></rect>", timeline)
    assert hovers[21] == f"{HOUR:%Y-%m-%d %H:%M} UTC: healthy (1 probe)"
    assert hovers[22].endswith("UTC: down (2 probes, 1 failed: timeout)")
    assert hovers[23].endswith("UTC: unknown (no probe)")


def test_the_charts_are_server_side_svg_that_fit_a_phone(
    viewer: Any, chain: tuple[LLMBackend, LLMBackend]
) -> None:
    html = signed_in(viewer).get(URL).content.decode()
    assert 'name="viewport"' in html
    assert "svg { max-width: 100%; height: auto; }" in html
    for title in [
        "Calls per hour",
        "Time to first token per hour",
        "Latency per hour",
        "Tokens/s per hour",
        "Calls, errors and fallbacks per hour, all models",
    ]:
        assert f'aria-label="{title}' in html, title
    assert "<script" not in html.split('id="content-main"', 1)[1]


def test_a_single_sample_is_drawn_as_a_point(viewer: Any, make_entry: Any) -> None:
    # The first hour of traffic: one call. A line needs two points; the dot is what shows.
    entry = make_entry("phi3:mini")
    now = timezone.now()
    samples_ingest(
        samples=[{**sample(entry, 0, ttft_ms=80.0, tokens_per_sec=42.0), "started_at": now}]
    )
    html = section(signed_in(viewer).get(URL).content.decode(), entry)
    for title, hover in [
        ("Time to first token per hour", "p50, "),
        ("Tokens/s per hour", "tok/s, "),
        ("Latency per hour", "avg, "),
    ]:
        chart = html[html.index(f'aria-label="{title}') :]
        chart = chart[: chart.index("</svg>")]
        points = re.findall(r'<circle class="point"[^>]*><title>([^<]+)</title>', chart)
        assert points, title
        assert any(p.startswith(hover) for p in points), points
    assert f"tok/s, {now:%Y-%m-%d %H}:00 UTC: 42 tok/s" in html


def test_the_figures_per_target_include_ttft_percentiles_errors_by_kind_and_cold_starts(
    viewer: Any, make_entry: Any, settings: Any
) -> None:
    settings.ATHENA_COLD_START_MS = 1000.0
    backup = make_entry("backup", endpoint_url="http://127.0.0.1:11500")
    main = make_entry("phi3:mini", backend_type="mlx", fallbacks=["backup"])
    samples_ingest(
        samples=[
            *(sample(main, i, ttft_ms=float(t)) for i, t in enumerate([10, 20, 30, 40, 50])),
            sample(main, 6, ok=False, error_kind="timeout", ttft_ms=999.0),
            sample(main, 7, ok=False, error_kind="timeout"),
            sample(main, 8, load_ms=2500.0, ttft_ms=None),  # a cold start
            sample(backup, 9, ok=False, error_kind="http_5xx"),
            sample(backup, 10, fallback=True, ttft_ms=7.0, tokens_per_sec=33.0),
        ]
    )
    html = section(signed_in(viewer).get(URL).content.decode(), main)
    rows = html.split('<tr class="target">')[1:]
    first, second = rows
    assert "<td>phi3:mini</td>" in first and "<td>backup</td>" in second
    assert figure(first, "num target-calls") == "8"
    assert figure(first, "num target-ttft-p50") == "30 ms"  # failed calls' TTFT left out
    assert figure(first, "num target-ttft-p95") == "48 ms"  # 40 + 0.8 * 10
    assert figure(first, "num target-cold-starts") == "1"
    assert '<small class="error-kind">timeout 2</small>' in first
    assert figure(second, "num target-calls") == "2"
    assert figure(second, "num target-fallbacks") == "1"
    assert figure(second, "num target-tps") == "33.0"
    assert '<small class="error-kind">http_5xx 1</small>' in second
    # The model's own figures: its entry's calls.
    assert figure(html, "ttft-p50") == "30 ms"
    assert figure(html, "cold-starts") == "1"
    assert '<span class="error-kind">timeout 2</span>' in html


@pytest.mark.parametrize(
    ("time_range", "calls", "slots"),
    [("1h", 0, 60), ("24h", 6, 24), ("7d", 7, 168), ("30d", 7, 30)],
)
def test_each_range_counts_its_own_window_in_its_own_slots(
    viewer: Any, chain: tuple[LLMBackend, LLMBackend], time_range: str, calls: int, slots: int
) -> None:
    main, _ = chain
    html = signed_in(viewer).get(URL, {"range": time_range}).content.decode()
    # The chain's calls were two hours ago, the old error 25 hours before that.
    assert re.search(rf'id="total-requests">{calls}<', html)
    assert f'<a href="?range={time_range}" class="current"' in html
    strip = section(html, main).split('class="health-strip"')[1].split("</svg>")[0]
    assert strip.count('<rect class="health-cell"') == slots


def test_a_range_it_does_not_know_is_refused_naming_the_field(viewer: Any) -> None:
    response = signed_in(viewer).get(URL, {"range": "2w"})
    assert response.status_code == 400
    assert response.content.decode() == "range: choose one of 1h, 24h, 7d, 30d."


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
    with CaptureQueriesContext(connection) as month:
        assert client.get(URL, {"range": "30d"}).status_code == 200
    assert len(month) == len(few)


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
