"""The LLM backends list and add form in Chromium at 1280 px, as an operator and a viewer."""

from typing import Any

from django.utils import timezone

from backends.models import LLMBackend
from tests.browser.conftest import Browser

LIST = "/admin/backends/llmbackend/"


def _registry(make_entry: Any) -> None:
    """Entries with long names and URLs, errors and figures: what makes a list too wide."""
    make_entry(
        "mlx-community/Meta-Llama-3.1-8B-Instruct-4bit",
        backend_type="mlx",
        endpoint_url="http://192.168.178.42:11435",
        upstream_model="mlx-community/Meta-Llama-3.1-8B-Instruct-4bit",
    )
    make_entry("phi3:mini-classify", upstream_model="phi3:mini")
    make_entry("qwen2.5-coder:32b-instruct-q4_K_M", endpoint_url="http://10.0.0.12:11434")
    LLMBackend.objects.update(
        health="down",
        health_checked_at=timezone.now(),
        health_error="connect: connection refused by 192.168.178.42:11435 after 3 attempts",
        avg_tokens_per_sec=123.45,
        avg_latency_ms=12345.6,
        total_requests=1234567,
        total_errors=12345,
        last_load_ms=4321.0,
        last_cold_start_at=timezone.now(),
    )


def _fits(browser: Browser) -> None:
    page = browser.js(
        "const d = document.documentElement;"
        "const r = document.querySelector('#changelist .results');"
        "return [d.scrollWidth, d.clientWidth, r ? r.scrollWidth : 0, r ? r.clientWidth : 0];"
    )
    assert page[1] == 1280, page
    assert page[0] <= page[1], f"the page scrolls sideways: {page}"
    assert page[2] <= page[3], f"the list scrolls sideways: {page}"


def test_an_operator_sees_every_column_at_1280_px_without_scrolling(
    browser: Browser, operator: Any, make_entry: Any
) -> None:
    _registry(make_entry)
    browser.open_as(operator, LIST)
    browser.wait_for("#result_list")
    browser.screenshot("changelist-operator")
    _fits(browser)
    headers = [th.text.strip().lower() for th in browser.find_all("#result_list thead th")]
    assert "health" in headers and "performance" in headers, headers
    badge = browser.find_all(".health-badge.down")[0]
    assert badge.text == "● Down"
    assert "connection refused" in badge.get_attribute("title")
    assert browser.find_all("td.field-performance")[0].text.startswith("123.5 tok/s · 12346 ms")
    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []


def test_a_viewer_sees_the_same_list_read_only(
    browser: Browser, viewer: Any, make_entry: Any
) -> None:
    _registry(make_entry)
    browser.open_as(viewer, LIST)
    browser.wait_for("#result_list")
    browser.screenshot("changelist-viewer")
    _fits(browser)
    assert not browser.find_all('a[href$="/add/"].addlink')
    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []


def test_an_operator_gets_an_add_form_without_empty_statistics(
    browser: Browser, operator: Any
) -> None:
    browser.open_as(operator, LIST)
    assert "No LLM backends yet." in browser.wait_for("#registry-empty").text
    browser.driver.find_element("link text", "Add the first one").click()
    browser.wait_for("#llmbackend_form")
    browser.screenshot("add-form")
    headings = [h.text for h in browser.find_all("#llmbackend_form fieldset h2")]
    assert "Health and performance" not in headings and "History" not in headings
    assert browser.find_all('input[name="model_name"]')
    assert browser.js("return document.title").endswith("| Athena admin")
    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []
