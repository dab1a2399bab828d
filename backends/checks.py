"""System checks: comparison settings that contradict each other, caught at start-up."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from backends.comparisons import MIN_SECONDS


@register("backends")
def check_comparison_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    most = settings.ATHENA_COMPARISON_MAX_REPETITIONS
    if most < 1:
        errors.append(Error("ATHENA_COMPARISON_MAX_REPETITIONS must be 1 or more.", id="backends.E001"))  # fmt: skip
    if not 1 <= settings.ATHENA_COMPARISON_REPETITIONS <= max(most, 1):
        errors.append(
            Error(
                f"ATHENA_COMPARISON_REPETITIONS must be from 1 to ATHENA_COMPARISON_MAX_REPETITIONS ({most}).",  # fmt: skip
                id="backends.E002",
            )
        )
    if settings.ATHENA_COMPARISON_MAX_SECONDS < MIN_SECONDS:
        errors.append(
            Error(
                f"ATHENA_COMPARISON_MAX_SECONDS must be {MIN_SECONDS} or more.", id="backends.E003"
            )  # fmt: skip
        )
    return errors
