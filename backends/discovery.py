"""Ask a backend which models it serves, and add registry entries for the new ones.

Wire formats read here:
- Ollama `GET /api/version` -> `{"version": "0.6.3"}` and `GET /api/tags` ->
  `{"models": [{"name": "llama3.2:latest", "model": ..., ...}]}` (ollama docs/api.md).
- OpenAI `GET /v1/models` -> `{"object": "list", "data": [{"id": ..., "owned_by": ...}]}`;
  Athena's MLX server answers the same, with `owned_by: "mlx"`, and reports
  `{"backend": "mlx"}` on `GET /health`.

The URL is checked against the allowed networks before any request, redirects are never
followed (a redirect could lead past that check), and every request has a timeout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.core.exceptions import ValidationError

from backends import services
from backends.endpoints import UnsafeEndpoint, check_endpoint_url
from backends.models import LLMBackend

__all__ = [
    "DiscoveredModels",
    "DiscoveryError",
    "DiscoveryResult",
    "discover_models",
    "discovered_entries_create",
    "registered_names",
]

# The registry's backend_type values (BackendType) that discovery can find.
OLLAMA, MLX, OPENAI = "ollama", "mlx", "openai"
DISCOVERABLE_TYPES = (OLLAMA, MLX, OPENAI)


class DiscoveryError(Exception):
    """The backend could not be asked; the message is one line for the operator."""


@dataclass
class DiscoveredModels:
    endpoint_url: str
    backend_type: str
    models: list[str]


@dataclass
class DiscoveryResult:
    """What a --create run did, per upstream model name."""

    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line each, saying why
    failed: list[str] = field(default_factory=list)


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        response = client.get(url)
    except httpx.TimeoutException:
        raise DiscoveryError(f"{url}: no answer within {client.timeout.read:g} s") from None
    except httpx.ConnectError as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else str(exc) or "failed"
        raise DiscoveryError(f"{url}: cannot connect ({reason})") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DiscoveryError(f"{url}: {type(exc).__name__}: {exc}") from None
    if response.is_redirect:
        location = response.headers.get("location", "?")
        raise DiscoveryError(
            f"{url}: redirected ({response.status_code}) to {location}; "
            "redirects are not followed, give the final URL"
        )
    return response


def _json(response: httpx.Response) -> Any:
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _ollama_models(client: httpx.Client, base: str) -> list[str]:
    body = _json(_get(client, f"{base}/api/tags"))
    if not isinstance(body, dict) or not isinstance(body.get("models"), list):
        raise DiscoveryError(f"{base}: not an Ollama server (GET /api/tags has no model list)")
    names = [m.get("name") or m.get("model") for m in body["models"] if isinstance(m, dict)]
    return sorted(n for n in names if isinstance(n, str) and n)


def _openai_models(client: httpx.Client, base: str) -> tuple[list[str], bool]:
    """The model ids at /v1/models, and whether every one is owned by Athena's MLX server."""
    body = _json(_get(client, f"{base}/v1/models"))
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise DiscoveryError(
            f"{base}: not an OpenAI-compatible server (GET /v1/models has no model list)"
        )
    rows = [m for m in body["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    mlx = bool(rows) and all(m.get("owned_by") == "mlx" for m in rows)
    return sorted(m["id"] for m in rows), mlx


def _is_mlx_server(client: httpx.Client, base: str) -> bool:
    body = _json(_get(client, f"{base}/health"))
    return isinstance(body, dict) and body.get("backend") == "mlx"


def _detect(client: httpx.Client, base: str) -> DiscoveredModels:
    # Ollama serves /v1/models too, so ask its own /api/version first; the MLX server speaks
    # Ollama's protocol as well, and tells itself apart on /health.
    version = _json(_get(client, f"{base}/api/version"))
    if isinstance(version, dict) and isinstance(version.get("version"), str):
        if _is_mlx_server(client, base):
            return DiscoveredModels(base, MLX, _openai_models(client, base)[0])
        return DiscoveredModels(base, OLLAMA, _ollama_models(client, base))
    try:
        models, mlx = _openai_models(client, base)
    except DiscoveryError:
        raise DiscoveryError(
            f"{base}: not an LLM server (neither Ollama's /api/version "
            "nor an OpenAI-compatible /v1/models answered)"
        ) from None
    return DiscoveredModels(base, MLX if mlx else OPENAI, models)


def discover_models(
    url: str,
    *,
    backend_type: str | None,
    allowed_networks: Iterable[str],
    resolve_hosts: bool = True,
    timeout: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> DiscoveredModels:
    """List the models a backend serves; detect its kind when backend_type is None."""
    base = url.rstrip("/")
    try:
        check_endpoint_url(base, allowed_networks, resolve_hosts=resolve_hosts)
    except UnsafeEndpoint as exc:
        # ascii(): a URL with a line break in it must not break the one-line message.
        shown = url if url.isascii() and url.isprintable() else ascii(url)
        raise DiscoveryError(f"{shown}: not allowed: {exc}") from None
    if backend_type is not None and backend_type not in DISCOVERABLE_TYPES:
        raise DiscoveryError(f"unknown backend type '{backend_type}'; use ollama, mlx or openai")
    # trust_env=False: an HTTP(S)_PROXY in the environment must not carry these requests
    # somewhere the address check above did not look.
    with httpx.Client(
        timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
    ) as client:
        if backend_type is None:
            return _detect(client, base)
        if backend_type == OLLAMA:
            return DiscoveredModels(base, backend_type, _ollama_models(client, base))
        return DiscoveredModels(base, backend_type, _openai_models(client, base)[0])


def registered_names(found: DiscoveredModels) -> dict[str, list[str]]:
    """For each discovered model, the registry entries already serving it at this endpoint."""
    serving: dict[str, list[str]] = {name: [] for name in found.models}
    urls = [found.endpoint_url, found.endpoint_url + "/"]
    for entry in LLMBackend.objects.filter(endpoint_url__in=urls):
        upstream = entry.resolved_upstream_model
        if upstream in serving:
            serving[upstream].append(entry.model_name)
    return serving


def discovered_entries_create(
    found: DiscoveredModels, *, prefix: str = "", user: Any = None
) -> DiscoveryResult:
    """Add an entry named prefix + model for each discovered model no entry serves yet."""
    result = DiscoveryResult()
    for upstream, entries in registered_names(found).items():
        model_name = f"{prefix}{upstream}"
        if entries:
            result.skipped.append(f"{upstream}: already served by {', '.join(entries)}")
            continue
        if LLMBackend.objects.filter(model_name=model_name).exists():
            result.skipped.append(f"{upstream}: the name '{model_name}' is taken by another entry")
            continue
        fields = {
            "model_name": model_name,
            "backend_type": found.backend_type,
            "endpoint_url": found.endpoint_url,
            "upstream_model": upstream,
            "description": f"Discovered at {found.endpoint_url}.",
        }
        try:
            services.backend_create(fields=fields, user=user)
        except ValidationError as exc:
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            result.failed.append(f"{upstream}: {detail}")
        except services.DuplicateModel as exc:
            result.skipped.append(f"{upstream}: {exc}")
        else:
            result.created.append(model_name)
    return result
