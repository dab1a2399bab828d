"""Identity fixtures: Athena's provider clients, signing key, and small real OIDC servers.

The fake external provider is a real HTTP server on 127.0.0.1 (a thread), answering
userinfo and introspection from a dict of token -> claims; a hanging server accepts
connections and never answers; a down provider is a port nobody listens on.
"""

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.core.management import call_command
from jwt.algorithms import RSAAlgorithm
from oidc_provider.models import Client, ResponseType

from tests.conftest import _group


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # Rate-limit counters and the bearer cache live in the cache: no test sees another's.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def signing_key(db: None) -> None:
    call_command("ensure_oidc_key", verbosity=0)


@pytest.fixture
def groups(db: None) -> None:
    _group("LLM operators")
    _group("LLM viewers")


@pytest.fixture
def service_client(db: None) -> Client:
    """A service registered as a confidential client for the client-credentials grant."""
    return Client.objects.create(
        name="orchestrator",
        client_id="orchestrator",
        client_secret="orchestrator-secret",
        client_type="confidential",
        _scope="athena.api",
    )


@pytest.fixture
def client_token(api: Any, service_client: Client) -> str:
    response = api.post(
        "/openid/token",
        {
            "grant_type": "client_credentials",
            "client_id": "orchestrator",
            "client_secret": "orchestrator-secret",
        },
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.fixture
def admin_client_registration(live_server: Any, signing_key: None) -> Client:
    """Athena's admin registered as a client of Athena's own provider."""
    code, _ = ResponseType.objects.get_or_create(
        value="code", defaults={"description": "code (Authorization Code Flow)"}
    )
    client = Client.objects.create(
        name="Athena admin",
        client_id="athena-admin",
        client_secret="athena-admin-secret",
        client_type="confidential",
        jwt_alg="RS256",
        require_consent=False,
        _redirect_uris=f"{live_server.url}/oidc/callback/",
        _scope="openid email profile groups",
    )
    client.response_types.add(code)
    return client


@pytest.fixture
def sso_to_athena(settings: Any, live_server: Any, admin_client_registration: Client) -> str:
    """Point the admin's SSO at Athena's own provider on the live server."""
    base = f"{live_server.url}/openid"
    settings.OIDC_RP_CLIENT_ID = "athena-admin"
    settings.OIDC_RP_CLIENT_SECRET = "athena-admin-secret"
    settings.OIDC_OP_ISSUER = base
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{base}/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{base}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{base}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{base}/jwks"
    settings.OIDC_CREATE_USER = True
    settings.OIDC_TIMEOUT = 5.0
    settings.ATHENA_OIDC_GROUPS_MAP = {
        "athena-operators": "LLM operators",
        "athena-viewers": "LLM viewers",
    }
    return base


class FakeProvider:
    """Userinfo at /userinfo, RFC 7662 introspection at /introspect, from `tokens`; its
    signing key at /jwks, and `issue()` to mint JWT access tokens as Keycloak does."""

    ISSUER = "https://idp.example"

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.status = 200
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == "/jwks":
                    self._answer(200, provider.jwks)
                    return
                provider.calls += 1
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if provider.status != 200:
                    self._answer(provider.status, {"error": "server_error"})
                elif token in provider.tokens:
                    self._answer(200, provider.tokens[token])
                else:
                    self._answer(401, {"error": "invalid_token"})

            def do_POST(self) -> None:
                provider.calls += 1
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                token = form.get("token", [""])[0]
                claims = provider.tokens.get(token)
                self._answer(200, {"active": True, **claims} if claims else {"active": False})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def issue(
        self,
        claims: dict[str, Any],
        *,
        aud: Any = "athena",
        scope: str = "openid profile",
        key: Any = None,
        **extra: Any,
    ) -> str:
        """Mint a signed JWT access token for these userinfo claims and accept it."""
        now = int(time.time())
        payload = {
            "iss": self.ISSUER,
            "sub": claims["sub"],
            "aud": aud,
            "scope": scope,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            **extra,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        token = jwt.encode(payload, key or self._key, algorithm="RS256", headers={"kid": "k1"})
        self.tokens[token] = claims
        return token

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_provider(settings: Any) -> Iterator[FakeProvider]:
    provider = FakeProvider()
    settings.OIDC_RP_CLIENT_ID = "athena"
    settings.OIDC_RP_CLIENT_SECRET = "athena-secret"
    settings.OIDC_OP_ISSUER = FakeProvider.ISSUER
    settings.OIDC_OP_USER_ENDPOINT = f"{provider.url}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{provider.url}/jwks"
    settings.ATHENA_OIDC_INTROSPECTION_ENDPOINT = ""
    settings.ATHENA_OIDC_GROUPS_MAP = {"ops": "LLM operators", "readers": "LLM viewers"}
    settings.OIDC_CREATE_USER = True
    yield provider
    provider.close()


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """Accepts TCP connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def down_url() -> str:
    """A URL on a port that was free a moment ago: connections are refused."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def bearer(api: Any) -> Callable[[str], Any]:
    def use(token: str) -> Any:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return api

    return use
