"""Whatever body a client sends to POST /api/comparisons: a 202, 400 or 409, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.models import ComparisonRun

pytestmark = pytest.mark.usefixtures("comparison_queue")

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),  # fmt: skip
    max_leaves=8,
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model_name": st.sampled_from(["tiny", "nope", "", "a//b"]) | _JSON,
        "repetitions": st.integers(-5, 30) | _JSON,
        "max_seconds": st.integers(-5, 400) | _JSON,
    },
)


@pytest.fixture
def operator_api(api_as: Any, operator: Any, make_entry: Any) -> Any:
    make_entry("tiny", backend_type="mlx", endpoint_url="http://127.0.0.1:9")
    return api_as(operator)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=_FIELDS | _JSON)
def test_any_json_body_gets_an_answer_in_the_api_shape(operator_api: Any, body: Any) -> None:
    response = operator_api.post("/api/comparisons", json.dumps(body), content_type="application/json")  # fmt: skip
    assert response.status_code in (202, 400, 409), response.content
    answer = response.json()
    if response.status_code == 202:
        assert ComparisonRun.objects.filter(pk=answer["id"], status="queued").exists()
        ComparisonRun.objects.filter(pk=answer["id"]).update(status="done")
    else:
        assert isinstance(answer["detail"], str) and answer["detail"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_a_4xx_or_a_run_never_a_500(operator_api: Any, raw: bytes) -> None:
    response = operator_api.post("/api/comparisons", raw, content_type="application/json")
    assert response.status_code in (202, 400, 409)
    if response.status_code == 202:
        ComparisonRun.objects.filter(pk=response.json()["id"]).update(status="done")
