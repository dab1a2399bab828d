"""Body parsers."""

import io
import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser


class JSONOrFormParser(FormParser):
    """Parse a form body, or a JSON object sent with curl's default form content type.

    The deployment guide's examples use `curl -d '{...}'` with no Content-Type header, so
    curl labels the JSON `application/x-www-form-urlencoded`. Reading such a body as JSON
    makes them work as written; a real form body still parses as a form.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read() if stream is not None else b""
        if body.lstrip()[:1] in (b"{", b"["):
            try:
                return json.loads(body)
            except ValueError as exc:
                raise ParseError(f"JSON parse error - {exc}") from None

        return super().parse(io.BytesIO(body), media_type, parser_context)
