"""The parts of uvicorn the gateway relies on that uvicorn does not document, checked once.

``workers.py`` subclasses uvicorn's worker supervisor: it overrides the hook uvicorn calls
every half second (``Multiprocess.keep_subprocess_alive``), reads its list of workers
(``processes``, each with ``pid`` and ``exitcode``) and uvicorn's start-up failure exit code.
None of that is public API, so it is all read here, from the versions tested, and checked
at import: a uvicorn that moved any of it stops the gateway at start with a message naming
what is missing, instead of failing later in a worker loop.
"""

from __future__ import annotations

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

__all__ = ["STARTUP_FAILURE", "Multiprocess", "Process", "UvicornIncompatible", "check"]

# The uvicorn releases these private parts were checked against (requirements.txt pins one).
TESTED = ((0, 30), (0, 55))  # from 0.30 up to, not including, 0.55


class UvicornIncompatible(ImportError):
    """The installed uvicorn lacks something the gateway's workers rely on."""


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def check(version: str, multiprocess: type, process: type, startup_failure: object) -> None:
    """Raise UvicornIncompatible naming what is missing or which version is untested."""
    low, high = TESTED
    if not low <= _version(version) < high:
        raise UvicornIncompatible(
            f"uvicorn {version} is untested with the gateway's workers (tested: "
            f"{low[0]}.{low[1]} to before {high[0]}.{high[1]}); check "
            "athena_admin/gateway/_uvicorn_compat.py against it and widen TESTED"
        )
    missing = []
    if not callable(getattr(multiprocess, "keep_subprocess_alive", None)):
        missing.append("Multiprocess.keep_subprocess_alive()")
    # An attribute set in __init__ (self.processes = ...) is among the names its code uses.
    init_code = getattr(vars(multiprocess).get("__init__"), "__code__", None)
    if init_code is None or "processes" not in init_code.co_names:
        missing.append("Multiprocess.processes")
    for name in ("pid", "exitcode"):
        if not isinstance(getattr(process, name, None), property):
            missing.append(f"Process.{name}")
    if not isinstance(startup_failure, int):
        missing.append("uvicorn.config.STARTUP_FAILURE")
    if missing:
        raise UvicornIncompatible(
            f"uvicorn {version} lacks what the gateway's workers use: {', '.join(missing)}"
        )


check(uvicorn.__version__, Multiprocess, Process, STARTUP_FAILURE)
