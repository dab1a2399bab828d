"""Endpoint URLs with control characters or look-alike hosts are refused everywhere."""

from collections.abc import Iterator
from io import StringIO
from typing import Any

import httpx
import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.endpoints import UnsafeEndpoint, check_endpoint_url
from backends.models import LLMBackend
from backends.probes import probe_entries
from backends.registry_yaml import RegistryFileError, registry_apply
from tests.backends.probe_servers import Knobs, probe_app
from tests.upstreams.runner import RunningServer, serve_in_thread

LAB = ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]

BAD_URLS = [
    "http://127.0.0.1:21501/p\r\nX: y",  # urlsplit drops CR/LF: the parts look fine
    "http://127.0.0.1:21501/p\nX: y",
    "http://127.0.0.1:21501\t/",
    "http://127.0.0.1:21501/a b",
    "http://1\uff12\uff17.0.0.1:21501",  # fullwidth digits, NFKC-normalised to 127.0.0.1
    "http://\uff4cocalhost:11434",  # fullwidth l
    "http://l\u043ecalhost:11434",  # Cyrillic o
    "http://127.0.0.1:21501/\x00",
    "http://127.0.0.1\\@10.0.0.1/",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_it_refuses_control_characters_and_look_alike_hosts(url: str) -> None:
    with pytest.raises(UnsafeEndpoint, match="URL characters"):
        check_endpoint_url(url, LAB, resolve_hosts=False)


@pytest.mark.parametrize(
    "url",
    ["http://bad host:1", "http://-x-:1", "http://a..b:1", "HTTP://[::1]A", "http://[::1]x:1"],
)
def test_it_refuses_hosts_that_are_not_host_names(url: str) -> None:
    with pytest.raises(UnsafeEndpoint):
        check_endpoint_url(url, LAB, resolve_hosts=False)


@pytest.mark.parametrize(
    "url", ["http://ollama_1:11434", "http://gpu-box.lan:11434/", "http://xn--bcher-kva.example/"]
)
def test_it_accepts_ordinary_host_names(url: str) -> None:
    check_endpoint_url(url, LAB, resolve_hosts=False)


_URL_CHARACTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?#[]@!$&'()*+,;=%"
)
_URLISH = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
        st.one_of(
            st.sampled_from(["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "a_b.lan"]),
            st.text(max_size=20),
            st.text(alphabet=_URL_CHARACTERS, max_size=20),
        ),
        st.one_of(st.text(max_size=30), st.text(alphabet=_URL_CHARACTERS, max_size=30)),
    ),
)


@settings(max_examples=400, deadline=None)
@given(url=_URLISH)
def test_whatever_the_string_it_is_refused_cleanly_or_every_client_reads_it_alike(url: str) -> None:
    try:
        check_endpoint_url(url, LAB, resolve_hosts=False)
    except UnsafeEndpoint as exc:
        assert str(exc)  # a reason to show the operator, never another exception
        return
    assert url.isascii() and url.isprintable() and not any(c.isspace() for c in url)
    parsed = httpx.URL(url)  # what the router and the probes send it with
    assert parsed.scheme in ("http", "https")
    assert parsed.host


# --- every way into the registry answers with the field's name ---

GOOD = {"model_name": "phi3:mini", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"}


@pytest.mark.parametrize("url", BAD_URLS[:5])
def test_the_api_answers_400_naming_endpoint_url(api_as: Any, operator: Any, url: str) -> None:
    response = api_as(operator).post(
        "/api/llm-backends", {**GOOD, "endpoint_url": url}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("endpoint_url: Endpoint URL must contain only")
    assert not LLMBackend.objects.exists()


def test_a_patch_cannot_put_a_line_break_into_a_stored_url(
    api_as: Any, operator: Any, make_entry: Any
) -> None:
    entry = make_entry()
    response = api_as(operator).patch(
        f"/api/llm-backends/{entry.pk}", {"endpoint_url": BAD_URLS[0]}, format="json"
    )
    assert response.status_code == 400
    assert "endpoint_url" in response.json()
    entry.refresh_from_db()
    assert entry.endpoint_url == "http://127.0.0.1:11434"


def test_the_admin_form_refuses_it(operator: Any) -> None:
    client = Client()
    client.force_login(operator)
    response = client.post(
        "/admin/backends/llmbackend/add/",
        {
            **GOOD,
            "endpoint_url": "http://127.0.0.1:21501/p\r\nX: y",
            "priority": 100,
            "max_tokens": 2048,
            "temperature_default": 0.7,
            "timeout_seconds": 60,
            "fallback_links-TOTAL_FORMS": 0,
            "fallback_links-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "must contain only URL characters" in response.content.decode()
    assert not LLMBackend.objects.exists()


@pytest.mark.django_db
def test_a_yaml_import_refuses_it_naming_the_field() -> None:
    text = yaml.safe_dump(
        {"version": 1, "backends": [{**GOOD, "endpoint_url": "http://\uff4cocalhost:1"}]}
    )
    with pytest.raises(RegistryFileError) as caught:
        registry_apply(text)
    assert "field endpoint_url: Endpoint URL must contain only URL characters" in str(caught.value)
    assert not LLMBackend.objects.exists()


@pytest.mark.django_db
def test_discover_models_says_so_in_one_line() -> None:
    with pytest.raises(CommandError) as caught:
        call_command("discover_models", "http://127.0.0.1:21501/p\r\nX: y")
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert "not allowed: must contain only URL characters" in message


# --- an entry stored before this rule cannot stop a probe round ---


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread(probe_app(Knobs())) as running:
        yield running


def _store_bad_url(entry: LLMBackend, url: str) -> None:
    """Write the URL past every validator, as an older Athena or a hand edit would have."""
    table = connection.ops.quote_name(LLMBackend._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET endpoint_url = %s WHERE id = %s", [url, entry.pk])


@pytest.mark.parametrize("url", [BAD_URLS[0], BAD_URLS[4], "http://127.0.0.1:1/\x1b[31m"])
def test_a_stored_bad_url_is_down_with_a_reason_and_the_others_are_probed(
    make_entry: Any, server: RunningServer, url: str
) -> None:
    bad = make_entry("bad:1b")
    _store_bad_url(bad, url)
    good = make_entry("phi3:mini", endpoint_url=server.url)
    outcomes = probe_entries(timeout=2)
    assert {o.model_name for o in outcomes} == {"bad:1b", "phi3:mini"}
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.health == "down"
    assert bad.health_error.startswith("invalid endpoint URL: must contain only URL characters")
    assert good.health == "healthy"


def test_probe_backends_prints_the_round_instead_of_aborting(
    make_entry: Any, server: RunningServer
) -> None:
    _store_bad_url(make_entry("bad:1b"), BAD_URLS[0])
    make_entry("phi3:mini", endpoint_url=server.url)
    out = StringIO()
    call_command("probe_backends", "--timeout", "2", stdout=out)
    assert out.getvalue().splitlines()[-1] == "2 probed, 1 down."


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HypothesisHealthCheck.function_scoped_fixture],
)
@given(url=st.text(min_size=1, max_size=40).map(lambda s: "http://127.0.0.1:1/" + s))
def test_whatever_url_is_stored_the_round_completes(make_entry: Any, url: str) -> None:
    LLMBackend.objects.all().delete()
    entry = make_entry("any:1b", endpoint_url="http://127.0.0.1:1")
    _store_bad_url(entry, url.replace("\x00", ""))  # PostgreSQL text cannot hold NUL
    [outcome] = probe_entries(timeout=0.5)
    entry.refresh_from_db()
    assert entry.health_checked_at is not None and outcome.entry_id == entry.pk
