"""`manage.py probe_backends`: probes once and prints a table; refuses bad arguments."""

from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.backends.probe_servers import Knobs, probe_app
from tests.upstreams.runner import RunningServer, serve_in_thread


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread(probe_app(Knobs())) as running:
        yield running


def test_it_prints_a_table_of_every_enabled_entry(make_entry, server):
    make_entry("phi3:mini", endpoint_url=server.url)
    make_entry("gone:1b", endpoint_url="http://127.0.0.1:9")
    out = StringIO()
    call_command("probe_backends", "--timeout", "2", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "model", "kind", "endpoint", "health", "latency", "ms", "present", "loaded", "error"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[2:] if line.strip()}
    assert rows["phi3:mini"][3:4] == ["healthy"]
    assert rows["phi3:mini"][-2:] == ["yes", "no"]
    assert rows["gone:1b"][-2:] == ["cannot", "connect"]
    assert lines[-1] == "2 probed, 0 down."


def test_it_probes_only_the_named_models(make_entry, server):
    make_entry("phi3:mini", endpoint_url=server.url)
    make_entry("other", endpoint_url="http://127.0.0.1:9")
    out = StringIO()
    call_command("probe_backends", "phi3:mini", stdout=out)
    assert "other" not in out.getvalue()
    assert out.getvalue().splitlines()[-1] == "1 probed, 0 down."


@pytest.mark.parametrize("timeout", ["soon", "0", "-1", "301"])
def test_it_rejects_a_bad_timeout(db, timeout):
    with pytest.raises(CommandError, match="--timeout must be"):
        call_command("probe_backends", "--timeout", timeout)


def test_it_rejects_an_unknown_model(db):
    with pytest.raises(CommandError, match="No backend configured for model 'nope'"):
        call_command("probe_backends", "nope")


def test_it_says_when_there_is_nothing_to_probe(db):
    out = StringIO()
    call_command("probe_backends", stdout=out)
    assert out.getvalue().strip() == "No enabled backends to probe."
