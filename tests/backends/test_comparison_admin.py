"""The admin's comparison pages: the action, past runs, the result page, start and cancel."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.test.html import parse_html

from backends.comparison_charts import dot_plot
from backends.comparison_selectors import Spread
from backends.comparisons import PROMPT_SET, comparison_run, comparison_start
from backends.models import ComparisonRun, ComparisonStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("comparison_queue")]

CHANGELIST = "/admin/backends/llmbackend/"
RUNS = "/admin/backends/comparisonrun/"


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def entries(make_entry: Any) -> None:
    make_entry("tiny", backend_type="mlx", endpoint_url="http://127.0.0.1:9")
    make_entry("other", endpoint_url="http://127.0.0.1:9")


def _action(client: Client, *model_names: str) -> Any:
    from backends.models import LLMBackend

    ids = list(LLMBackend.objects.filter(model_name__in=model_names).values_list("pk", flat=True))
    return client.post(CHANGELIST, {"action": "compare_backends", "_selected_action": ids})


def test_the_action_starts_a_run_and_opens_its_page(operator: Any, entries: None) -> None:
    response = _action(_client(operator), "tiny")
    run = ComparisonRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{RUNS}{run.pk}/change/"
    assert (run.model_name, run.status, run.created_by) == ("tiny", "queued", operator)


def test_the_action_on_several_models_starts_one_run_each_and_lists_them(
    operator: Any, entries: None
) -> None:
    client = _client(operator)
    response = _action(client, "tiny", "other")
    assert response["Location"] == RUNS
    assert sorted(ComparisonRun.objects.values_list("model_name", flat=True)) == ["other", "tiny"]
    # A second time: both are in progress, which the operator is told, and nothing starts.
    page = client.post(CHANGELIST, {"action": "compare_backends", "_selected_action": []})
    again = _action(client, "tiny")
    assert ComparisonRun.objects.count() == 2
    listing = client.get(again["Location"]).content.decode()
    assert "A comparison of model &#x27;tiny&#x27; is already in progress" in listing
    assert page.status_code in (200, 302)


def test_a_viewer_sees_runs_but_cannot_start_or_cancel(
    viewer: Any, operator: Any, entries: None
) -> None:
    client = _client(viewer)
    _action(client, "tiny")
    assert not ComparisonRun.objects.exists()
    assert client.post(f"{RUNS}start/", {"model_name": "tiny"}).status_code == 403
    assert not ComparisonRun.objects.exists()

    run = comparison_start(model_name="tiny", user=operator)
    assert client.post(f"{RUNS}{run.pk}/cancel/").status_code == 403
    assert ComparisonRun.objects.get(pk=run.pk).status == ComparisonStatus.QUEUED
    listing = client.get(RUNS)
    assert listing.status_code == 200 and 'id="start-comparison"' not in listing.content.decode()
    page = client.get(f"{RUNS}{run.pk}/change/").content.decode()
    assert "Cancel this run" not in page and "Run again" not in page


def test_a_stranger_sees_no_runs(stranger: Any, operator: Any, entries: None) -> None:
    run = comparison_start(model_name="tiny", user=operator)
    client = _client(stranger)
    assert client.get(RUNS).status_code == 403
    assert client.get(f"{RUNS}{run.pk}/change/").status_code == 403


def test_the_start_form_starts_a_run_and_refuses_bad_repetitions(
    operator: Any, entries: None
) -> None:
    client = _client(operator)
    assert 'id="start-comparison"' in client.get(RUNS).content.decode()
    bad = client.post(f"{RUNS}start/", {"model_name": "tiny", "repetitions": "many"}, follow=True)
    assert (
        "Cannot compare &#x27;tiny&#x27;: repetitions: Must be a whole number from 1 to 20."
        in bad.content.decode()
    )
    assert not ComparisonRun.objects.exists()
    unknown = client.post(f"{RUNS}start/", {"model_name": "nope"}, follow=True)
    assert (
        "Cannot compare &#x27;nope&#x27;: model_name: No backend configured for model"
        in unknown.content.decode()
    )
    started = client.post(f"{RUNS}start/", {"model_name": "tiny", "repetitions": "2"})
    run = ComparisonRun.objects.get()
    assert started["Location"] == f"{RUNS}{run.pk}/change/" and run.repetitions == 2


def test_an_unfinished_run_refreshes_itself_and_can_be_cancelled(
    operator: Any, entries: None
) -> None:
    client = _client(operator)
    run = comparison_start(model_name="tiny", user=operator)
    page = client.get(f"{RUNS}{run.pk}/change/").content.decode()
    assert '<meta http-equiv="refresh" content="5">' in page and "Cancel this run" in page

    response = client.post(f"{RUNS}{run.pk}/cancel/", follow=True)
    page = response.content.decode()
    assert "Cancelled: no further call will be sent." in page
    assert "Cancelled by olivia." in page and 'http-equiv="refresh"' not in page
    assert ComparisonRun.objects.get(pk=run.pk).status == ComparisonStatus.CANCELLED


def test_the_result_page_shows_targets_side_by_side_with_every_call_drawn(
    operator: Any, compared: dict[str, Any]
) -> None:
    earlier = comparison_start(model_name="tiny", repetitions=1)
    comparison_run(run_id=earlier.pk)
    run = comparison_start(model_name="tiny", repetitions=2)
    comparison_run(run_id=run.pk)
    run.refresh_from_db()

    page = _client(operator).get(f"{RUNS}{run.pk}/change/").content.decode()
    parse_html(page)  # well-formed enough for Django's parser
    start = page.index('id="comparison-table"')
    table = page[start : page.index("</table>", start)]
    heads = re.findall(r'<th scope="col" class="target( fastest)?">(.*?)</th>', table, re.S)
    assert [h[1].split("<br>")[0] for h in heads] == [
        f"mlx {compared['fast'].endpoint_url}",
        f"ollama {compared['dead'].endpoint_url}",
        f"openai {compared['slow'].endpoint_url}",
    ]
    assert [bool(h[0]) for h in heads] == [True, False, False]
    assert "unreachable: cannot connect" in table
    assert "× slower" in table
    assert run.headline in page.replace("&#x27;", "'")
    # Three charts; each draws every measured call of the two live targets as a dot.
    charts = page[page.index('id="comparison-charts"') : page.index('id="prompt-set"')]
    assert charts.count("<svg") == 3
    per_target = 2 * len(PROMPT_SET)
    assert charts.count('class="sample"') == 3 * 2 * per_target
    assert charts.count('class="median"') == 3 * 2
    assert charts.count("no answer") == 3  # the dead target, once per chart
    assert f'href="{RUNS}{earlier.pk}/change/"' in page  # earlier runs, for comparison
    listing = _client(operator).get(RUNS).content.decode().replace("&#x27;", "'")
    assert run.headline in listing and earlier.headline in listing


def test_a_chart_draws_a_single_sample_as_a_point() -> None:
    svg = str(dot_plot([("only", Spread((42.0,)))], title="T", unit="ms"))
    assert svg.count('class="sample"') == 1 and svg.count('class="median"') == 1
    assert "<title>42.0 ms</title>" in svg
