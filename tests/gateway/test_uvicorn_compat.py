"""uvicorn's undocumented parts the workers use are checked at import, and fail loudly."""

from __future__ import annotations

import pytest
import uvicorn

from athena_admin.gateway import _uvicorn_compat as compat
from athena_admin.gateway._uvicorn_compat import UvicornIncompatible, check


def test_the_installed_uvicorn_has_everything_the_workers_use():
    check(uvicorn.__version__, compat.Multiprocess, compat.Process, compat.STARTUP_FAILURE)


@pytest.mark.parametrize("version", ["0.29.0", "0.55.0", "1.0.0"])
def test_an_untested_version_is_refused_naming_it(version):
    with pytest.raises(UvicornIncompatible, match=f"uvicorn {version} is untested"):
        check(version, compat.Multiprocess, compat.Process, compat.STARTUP_FAILURE)


def test_a_supervisor_without_the_hook_or_the_worker_list_is_refused():
    class Supervisor:
        def __init__(self) -> None:
            self.workers: list[object] = []

    with pytest.raises(UvicornIncompatible) as caught:
        check(uvicorn.__version__, Supervisor, compat.Process, compat.STARTUP_FAILURE)
    assert "Multiprocess.keep_subprocess_alive()" in str(caught.value)
    assert "Multiprocess.processes" in str(caught.value)


def test_a_worker_without_pid_and_exitcode_or_a_missing_exit_code_is_refused():
    with pytest.raises(UvicornIncompatible) as caught:
        check(uvicorn.__version__, compat.Multiprocess, object, None)
    message = str(caught.value)
    assert "Process.pid" in message and "Process.exitcode" in message
    assert "uvicorn.config.STARTUP_FAILURE" in message
