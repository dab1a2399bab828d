"""A backend comparison in Chromium: started from the list, followed without JavaScript."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from backends.comparisons import PROMPT_SET, comparison_run, comparison_start
from backends.models import ComparisonRun
from tests.backends.comparison_targets import (  # noqa: F401 - fixtures, used by name
    compared,
    comparison_queue,
    mlx,
    slow_upstream,
    tiny_model_path,
)
from tests.browser.conftest import Browser

pytestmark = pytest.mark.usefixtures("comparison_queue")


@pytest.fixture
def targets(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The MLX server, the slowed upstream and a dead port, all serving `tiny-llama`."""
    return dict(request.getfixturevalue("compared"))


def _no_sideways_scroll(browser: Browser) -> None:
    widths = browser.js(
        "const d = document.documentElement; return [d.scrollWidth, d.clientWidth];"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


def test_an_operator_starts_a_comparison_and_watches_it_finish(
    browser: Browser, operator: Any, targets: dict[str, Any]
) -> None:
    browser.open_as(operator, "/admin/backends/llmbackend/")
    browser.wait_for(f'input.action-select[value="{targets["fast"].pk}"]').click()
    Select(browser.driver.find_element(By.NAME, "action")).select_by_value("compare_backends")
    browser.driver.find_element(By.CSS_SELECTOR, 'button[name="index"]').click()
    browser.wait_for("#cancel-run")  # the run's page, queued, for as long as no worker runs it
    run = ComparisonRun.objects.get()
    assert browser.driver.current_url.endswith(f"/admin/backends/comparisonrun/{run.pk}/change/")
    assert "Queued" in browser.driver.find_element(By.ID, "run-status").text

    def work() -> None:  # the worker's part, done here: the page must notice by itself
        try:
            comparison_run(run_id=run.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=120)
    # No JavaScript: the page reloads itself (meta refresh) until the run has ended.
    browser.wait_for("#run-again", timeout=20)
    browser.screenshot("comparison-result")

    fastest = browser.driver.find_element(By.ID, "fastest").text
    assert fastest.startswith(f"Fastest: mlx {targets['fast'].endpoint_url}")
    header = browser.find_all("#comparison-table th.target.fastest")
    assert len(header) == 1
    assert f"mlx {targets['fast'].endpoint_url}" in header[0].get_attribute("textContent")
    dots = browser.find_all("#comparison-charts circle.sample")
    # Three charts; the two live targets' measured calls each drawn, the dead one not at all.
    assert len(dots) == 3 * 2 * len(PROMPT_SET) * run.repetitions
    assert all(d.is_displayed() for d in dots)
    assert "unreachable: cannot connect" in browser.driver.find_element(By.ID, "comparison-table").text  # fmt: skip
    _no_sideways_scroll(browser)
    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []


def test_a_viewer_reads_a_result_but_finds_nothing_to_start_or_cancel(
    browser: Browser, viewer: Any, operator: Any, targets: dict[str, Any]
) -> None:
    run = comparison_start(model_name="tiny", repetitions=1, user=operator)
    comparison_run(run_id=run.pk)
    browser.open_as(viewer, "/admin/backends/comparisonrun/")
    browser.wait_for("#result_list")
    assert not browser.find_all("#start-comparison")
    browser.driver.find_element(By.LINK_TEXT, "tiny").click()
    browser.wait_for("#comparison-charts")
    browser.screenshot("comparison-result-viewer")
    assert not browser.find_all("#cancel-run") and not browser.find_all("#run-again")
    medians = browser.find_all("#comparison-charts line.median")
    assert len(medians) == 3 * 2
    title = browser.find_all("#comparison-charts circle.sample title")[0]
    assert title.get_attribute("textContent").endswith(" tokens/s")  # hover: the call's value
    _no_sideways_scroll(browser)
    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []
