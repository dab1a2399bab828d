"""The SSRF rules for backend endpoint URLs."""

import pytest

from backends.endpoints import UnsafeEndpoint, check_endpoint_url

HOME_LAB = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:11434",
        "http://127.0.0.1:11435",
        "https://192.168.1.20:8443/v1",
        "http://10.0.0.7",
        "http://[::1]:8080",
        "http://[fd12::5]:11434",
    ],
)
def test_it_accepts_home_lab_endpoints(url: str) -> None:
    check_endpoint_url(url, HOME_LAB, resolve_hosts=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "never allowed"),
        ("http://[fd00:ec2::254]/", "never allowed"),
        ("http://0.0.0.0:11434", "never allowed"),
        ("http://[::ffff:169.254.169.254]/", "never allowed"),
        ("http://[::ffff:a9fe:a9fe]/", "never allowed"),
        ("http://[64:ff9b::169.254.169.254]/", "never allowed"),
        ("http://[::]/", "never allowed"),
        ("http://2130706433/", "non-standard IP spelling"),
        ("http://0177.0.0.1/", "non-standard IP spelling"),
        ("http://0x7f000001/", "non-standard IP spelling"),
        ("http://127.1/", "non-standard IP spelling"),
        ("http://8.8.8.8/", "outside the allowed networks"),
        ("http://[2001:4860::8888]/", "outside the allowed networks"),
        ("ftp://127.0.0.1/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("127.0.0.1:11434", "http:// or https://"),
        ("http://user:secret@127.0.0.1/", "credentials"),
        ("http:///nohost", "host"),
        ("http://does-not-exist.invalid/", "does not resolve"),
    ],
)
def test_it_refuses_unsafe_endpoints(url: str, reason: str) -> None:
    with pytest.raises(UnsafeEndpoint, match=reason):
        check_endpoint_url(url, HOME_LAB, resolve_hosts=True)


def test_metadata_stays_refused_even_when_the_operator_allows_everything() -> None:
    with pytest.raises(UnsafeEndpoint, match="never allowed"):
        check_endpoint_url("http://169.254.169.254/", ["0.0.0.0/0", "::/0"], resolve_hosts=True)


def test_a_public_address_is_allowed_once_the_operator_allows_it() -> None:
    check_endpoint_url("https://8.8.8.8/v1", [*HOME_LAB, "8.8.8.0/24"], resolve_hosts=True)
