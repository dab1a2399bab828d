import subprocess
import sys

import routing


def test_all_lists_exactly_the_public_names():
    public = {name for name in dir(routing) if not name.startswith("_")} - {
        "annotations",
        "importlib",
        "TYPE_CHECKING",
        "Any",
    }
    assert set(routing.__all__) == public
    for name in routing.__all__:
        assert getattr(routing, name) is not None


def test_every_exception_is_a_routing_error():
    for name in routing.__all__:
        obj = getattr(routing, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, routing.RoutingError)


def test_importing_routing_loads_no_django():
    code = (
        "import sys, routing\n"
        "from routing import get_llm_router, LLMRouter, generate_sync, chat_sync\n"
        "import routing.__main__\n"
        "r = get_llm_router()\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "", "ADMIN_API_URL": "http://127.0.0.1:9"},
    )
    assert out.stdout.strip() == "[]"


def test_get_llm_router_reads_the_environment_and_is_shared(monkeypatch, tmp_path):
    from routing import _router

    routes = tmp_path / "routes.json"
    routes.write_text(
        '{"routes": [{"model": "m", "targets": [{"backend_type": "ollama", "endpoint_url": "http://h:1"}]}]}'
    )
    monkeypatch.setattr(_router, "_router", None)
    monkeypatch.setenv("ATHENA_ROUTES_FILE", str(routes))
    monkeypatch.delenv("ADMIN_API_URL", raising=False)
    monkeypatch.setenv("ATHENA_SERVICE_KEY", "k")
    router = routing.get_llm_router()
    assert routing.get_llm_router() is router
    assert router._routes._admin_url is None  # a routes file and no ADMIN_API_URL: no admin
    assert router._routes._file["m"].targets[0].upstream_model == "m"
    monkeypatch.setattr(_router, "_router", None)
    monkeypatch.delenv("ATHENA_ROUTES_FILE")
    assert routing.get_llm_router()._routes._admin_url == "http://localhost:8080"
    monkeypatch.setattr(_router, "_router", None)
