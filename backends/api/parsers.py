"""Body parsers."""

import io
import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.utils.json import strict_constant

# No API body nests deeper than a few levels (a sample batch: 3). A limit far below
# Python's recursion limit keeps every later walk over the value (validation, error
# messages, rendering) safe too.
MAX_JSON_DEPTH = 32


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in value nest deeper than limit (no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads_bounded(body: bytes | str) -> Any:
    """json.loads, with a nesting limit: too deep is a ParseError (a 400), not a 500."""
    try:
        value = json.loads(body, parse_constant=strict_constant)  # NaN is not JSON
    except RecursionError:
        raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
    return value


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a nesting limit (json.loads recurses: deep input was a 500)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            value = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels"
            ) from None
        if _deeper_than(value, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        return value


class JSONOrFormParser(FormParser):
    """Parse a form body, or a JSON object sent with curl's default form content type.

    The deployment guide's examples use `curl -d '{...}'` with no Content-Type header, so
    curl labels the JSON `application/x-www-form-urlencoded`. Reading such a body as JSON
    makes them work as written; a real form body still parses as a form.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read() if stream is not None else b""
        if body.lstrip()[:1] in (b"{", b"["):
            return loads_bounded(body)

        return super().parse(io.BytesIO(body), media_type, parser_context)
