"""Contradicting comparison settings are refused at start-up by a system check."""

from django.test import override_settings

from backends.checks import check_comparison_settings


def ids() -> list[str]:
    return [message.id or "" for message in check_comparison_settings()]


def test_the_defaults_pass() -> None:
    assert ids() == []


@override_settings(ATHENA_COMPARISON_MAX_REPETITIONS=0)
def test_no_repetitions_allowed_is_refused() -> None:
    assert "backends.E001" in ids()


@override_settings(ATHENA_COMPARISON_REPETITIONS=30, ATHENA_COMPARISON_MAX_REPETITIONS=20)
def test_a_default_above_the_maximum_is_refused() -> None:
    assert ids() == ["backends.E002"]


@override_settings(ATHENA_COMPARISON_MAX_SECONDS=5)
def test_a_time_limit_below_ten_seconds_is_refused() -> None:
    assert ids() == ["backends.E003"]
