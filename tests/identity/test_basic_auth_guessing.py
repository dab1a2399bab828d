"""HTTP Basic on the API is held to the login rate: failures per (address, username)."""

import base64
from typing import Any

import pytest

pytestmark = pytest.mark.django_db


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def get(api: Any, password: str, address: str, username: str = "olivia") -> Any:
    return api.get(
        "/api/llm-backends",
        HTTP_AUTHORIZATION=basic(username, password),
        REMOTE_ADDR=address,
    )


def test_wrong_passwords_then_the_right_one_is_a_429(
    api: Any, settings: Any, operator: Any
) -> None:
    settings.ATHENA_LOGIN_RATE = "3/hour"  # an hour window: no boundary inside the test
    assert [get(api, f"guess-{n}", "10.6.6.6").status_code for n in range(3)] == [401] * 3
    refused = get(api, "pw-olivia", "10.6.6.6")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 3601
    assert "Too many failed sign-ins" in refused.json()["detail"]


def test_the_real_user_from_another_address_still_gets_in(
    api: Any, settings: Any, operator: Any
) -> None:
    settings.ATHENA_LOGIN_RATE = "3/hour"  # an hour window: no boundary inside the test
    for n in range(10):
        get(api, f"guess-{n}", "10.6.6.6")
    assert get(api, "pw-olivia", "10.0.0.7").status_code == 200


def test_right_passwords_are_never_counted(api: Any, settings: Any, operator: Any) -> None:
    settings.ATHENA_LOGIN_RATE = "3/hour"  # an hour window: no boundary inside the test
    assert all(get(api, "pw-olivia", "10.0.0.7").status_code == 200 for _ in range(10))


def test_one_address_guessing_many_usernames_is_limited(
    api: Any, settings: Any, operator: Any
) -> None:
    settings.ATHENA_LOGIN_ADDRESS_RATE = "4/hour"  # an hour window: no boundary inside the test
    codes = [get(api, "x", "10.6.6.6", username=f"user{n}").status_code for n in range(5)]
    assert codes == [401, 401, 401, 401, 429]
    assert get(api, "pw-olivia", "10.0.0.7").status_code == 200
