"""Whatever a router sends as samples: never a 500, and every good sample is stored."""

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.models import RequestSample
from tests.backends.samples import sample

FIELDS = list(sample(None))

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "2026-11-25T22:00:00Z", "0001-01-01T00:00:00+14:00", "http_4xx", "\x00"]),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


@st.composite
def _samples(draw: st.DrawFn) -> Any:
    """A good sample, a good sample with some fields replaced or removed, or any JSON value."""
    kind = draw(st.sampled_from(["good", "spoiled", "anything"]))
    if kind == "anything":
        return draw(_json_values), False
    one = sample(None)
    if kind == "spoiled":
        for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
            if draw(st.booleans()):
                one.pop(name, None)
            else:
                one[name] = draw(_json_values)
    return one, kind == "good"


@pytest.fixture
def client(api_as: Any, service_key: str) -> Any:
    return api_as(service_key)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=st.lists(_samples(), min_size=1, max_size=12))
def test_any_sample_list_is_never_a_500_and_the_good_samples_are_stored(
    client: Any, drawn: list[tuple[Any, bool]]
) -> None:
    RequestSample.objects.all().delete()
    items = [item for item, _ in drawn]
    body = json.dumps({"samples": items})
    response = client.post("/api/metrics/samples", body, content_type="application/json")
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["accepted"] + answer["duplicates"] + answer["rejected"] == len(items)
    assert {e["index"] for e in answer["errors"]} <= set(range(len(items)))
    assert len({e["index"] for e in answer["errors"]}) == answer["rejected"]
    assert RequestSample.objects.count() == answer["accepted"]
    good = {uuid.UUID(item["id"]) for item, is_good in drawn if is_good}
    assert good <= set(RequestSample.objects.values_list("id", flat=True))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_json_values
    | st.floats()
    | st.lists(st.floats(), max_size=2).map(lambda f: {"samples": f})
)
def test_a_body_that_is_no_batch_is_a_400_never_a_500(client: Any, body: Any) -> None:
    # json.dumps writes NaN and Infinity, which are not JSON: those bodies are a 400 too.
    response = client.post(
        "/api/metrics/samples", json.dumps(body), content_type="application/json"
    )
    assert response.status_code in (202, 400), response.content
    assert "detail" in response.json() or "accepted" in response.json()
