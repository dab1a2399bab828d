"""The dashboard in Chromium: a person sees points on the charts and health on hover."""

import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from backends.models import Health, HealthCheck
from backends.services import samples_ingest
from tests.browser.conftest import Browser


def _traffic(make_entry: Any) -> None:
    """A chain, MLX then Ollama, with one sample this hour: the first hour of traffic."""
    make_entry("backup", endpoint_url="http://127.0.0.1:11500")
    main = make_entry("phi3:mini", backend_type="mlx", fallbacks=["backup"])
    now = timezone.now()
    HealthCheck.objects.create(
        entry=main, checked_at=now, ok=False, health=Health.DOWN, error="timeout"
    )
    samples_ingest(
        samples=[
            {
                "id": uuid.uuid4(), "entry_id": main.pk, "model": "phi3:mini",
                "backend_type": "mlx", "endpoint_url": main.endpoint_url,
                "started_at": now - timedelta(seconds=5), "ok": True, "latency_ms": 420.0,
                "ttft_ms": 80.0, "tokens_per_sec": 42.0, "completion_tokens": 17,
            }
        ]
    )  # fmt: skip


def test_a_viewer_sees_the_first_sample_drawn_and_the_health_on_hover(
    browser: Browser, viewer: Any, make_entry: Any
) -> None:
    _traffic(make_entry)
    browser.open_as(viewer, "/admin/dashboard/")
    browser.wait_for("section.panel")
    browser.screenshot("dashboard-24h")

    ttft = browser.find_all('svg[aria-label^="Time to first token"] circle.point')
    assert ttft, "the one sample is drawn as a point"
    assert all(c.is_displayed() and float(c.get_attribute("r")) > 0 for c in ttft)
    hovers = [c.find_element("tag name", "title").get_attribute("textContent") for c in ttft]
    assert any(h.startswith("p50, ") and h.endswith(": 80 ms") for h in hovers), hovers

    down = browser.find_all('rect.health-cell[data-state="down"]')
    assert len(down) == 1
    hover = down[0].find_element("tag name", "title").get_attribute("textContent")
    assert hover.endswith("down (1 probe, 1 failed: timeout)")

    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []


def test_an_operator_switches_to_the_last_hour(
    browser: Browser, operator: Any, make_entry: Any
) -> None:
    _traffic(make_entry)
    browser.open_as(operator, "/admin/dashboard/")
    browser.driver.find_element("link text", "1h").click()
    browser.wait_for('#ranges a.current[href="?range=1h"]')
    browser.screenshot("dashboard-1h")
    assert browser.find_all('svg[aria-label="Tokens/s per minute"] circle.point')
    strip = browser.find_all("section.panel")[1].find_elements("css selector", "rect.health-cell")
    assert len(strip) == 60
    assert browser.js("return document.documentElement.scrollWidth") <= browser.js(
        "return document.documentElement.clientWidth"
    )
    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []
