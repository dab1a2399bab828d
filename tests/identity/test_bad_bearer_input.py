"""Malformed Authorization headers: a 401 that says what is wrong, never a 500."""

from typing import Any

import pytest


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Bearer", "Empty bearer token."),
        ("Bearer    ", "Empty bearer token."),
        ("bearer two parts", "Malformed bearer token: it contains spaces."),
        ("Bearer abc\x7f", "Malformed bearer token."),
        ("Bearer " + "a" * 5000, "Malformed bearer token."),
        ("Bearer deadbeef", "Unknown bearer token."),
        ("Bearer athk_garbage", "Invalid or revoked API key."),
        ("Basic !!!notbase64", "Invalid basic header. Credentials not correctly base64 encoded."),
        ("Token abc", "Authentication credentials were not provided."),
        ("", "Authentication credentials were not provided."),
    ],
)
def test_it_answers_401_with_a_clear_message(api: Any, db: None, header: str, detail: str) -> None:
    response = api.get("/api/routes", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["detail"] == detail


def test_non_ascii_headers_are_refused(api: Any, db: None) -> None:
    response = api.get("/api/routes", HTTP_AUTHORIZATION="Bearer t\u00f6ken")
    assert response.status_code == 401


def test_guessing_tokens_is_throttled_per_address(api: Any, db: None, settings: Any) -> None:
    settings.ATHENA_BEARER_FAILURE_RATE = "3/hour"  # an hour window: no boundary inside the test
    codes = [
        api.get("/api/routes", HTTP_AUTHORIZATION=f"Bearer guess-{n}").status_code for n in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]
    other = api.get("/api/routes", HTTP_AUTHORIZATION="Bearer x", REMOTE_ADDR="10.1.1.1")
    assert other.status_code == 401
