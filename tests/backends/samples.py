"""A request sample as a router sends it to POST /api/metrics/samples, for the ingest tests."""

import uuid
from typing import Any

from django.utils import timezone


def sample(entry_id: int | None, **fields: Any) -> dict[str, Any]:
    """A valid sample for entry_id (None: unattributed); `fields` override its values."""
    return {
        "id": str(uuid.uuid4()),
        "entry_id": entry_id,
        "model": "m",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
        "started_at": timezone.now().isoformat(),
        "ok": True,
        "error_kind": None,
        "status_code": 200,
        "latency_ms": 100.0,
        "ttft_ms": 10.0,
        "load_ms": None,
        "prompt_tokens": 5,
        "completion_tokens": 50,
        "tokens_per_sec": 50.0,
        "fallback": False,
        "stream": False,
        **fields,
    }
