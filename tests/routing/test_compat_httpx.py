"""routing/_compat_httpx.py: httpx's private proxy reader, checked at import."""

from __future__ import annotations

import types

import httpx
import pytest

from routing import _compat_httpx


def test_the_installed_httpx_is_one_the_module_was_checked_against():
    assert callable(_compat_httpx.check(httpx, httpx.__version__))


@pytest.mark.parametrize("version", ["0.27.2", "1.0.0", "dev"])
def test_another_httpx_version_fails_loudly(version):
    with pytest.raises(ImportError, match=f"found {version}"):
        _compat_httpx.check(httpx, version)


def test_a_missing_private_attribute_fails_loudly():
    without = types.SimpleNamespace(_utils=types.SimpleNamespace())
    with pytest.raises(ImportError, match="no _utils.get_environment_proxies"):
        _compat_httpx.check(without, httpx.__version__)


def test_environment_proxies_reads_the_proxy_variables(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert _compat_httpx.environment_proxies() == {}
    monkeypatch.setenv("HTTPS_PROXY", "proxy.lan:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.lan")
    assert _compat_httpx.environment_proxies() == {
        "https://": "http://proxy.lan:3128",
        "all://localhost": None,
        "all://*.lan": None,
    }
    monkeypatch.setenv("NO_PROXY", "*")
    assert _compat_httpx.environment_proxies() == {}
