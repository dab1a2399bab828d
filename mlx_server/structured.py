"""Read the structured-output fields of both protocols into one `JsonConstraint`.

Wire formats:
- Ollama (docs/api.md, "Structured outputs"): `format` is `"json"` or a JSON schema object.
- OpenAI (API reference, chat `response_format`): `{"type": "text"}`, `{"type": "json_object"}`
  or `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`.

Framework-free and MLX-free on purpose: this is wire parsing, meant to move to the shared
protocol package (issue 12) as it is. The grammar that enforces a constraint is built in
grammar.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .errors import InvalidRequest

# What "any JSON" means in JSON mode: an object, as OpenAI's json_object and Ollama's
# `format: "json"` (llama.cpp's json grammar, whose root is an object) both produce.
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class JsonConstraint:
    """An answer must be JSON matching `schema`; `param` names the field it came from."""

    # Compact JSON in the request's key order (the grammar writes properties in that order):
    # the grammar cache's key.
    schema_text: str
    param: str

    @property
    def schema(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.schema_text)
        return value


def _constraint(schema: Any, param: str) -> JsonConstraint:
    """Check that `schema` is a JSON schema (draft 2020-12 meta-schema) and wrap it."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"'{param}' must be a JSON schema object", param=param)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        at = f" at '{where}'" if where else ""
        raise InvalidRequest(
            f"'{param}' is not a valid JSON schema{at}: {exc.message}", param=param
        ) from exc
    return JsonConstraint(json.dumps(schema, separators=(",", ":")), param)


def ollama_format(body: dict[str, Any]) -> JsonConstraint | None:
    """Read Ollama's `format`: absent/empty, "json", or a JSON schema."""
    value = body.get("format")
    if value is None or value == "":
        return None
    if value == "json":
        return _constraint(ANY_JSON_OBJECT, "format")
    if isinstance(value, dict):
        return _constraint(value, "format")
    raise InvalidRequest("'format' must be \"json\" or a JSON schema object", param="format")


def openai_response_format(body: dict[str, Any]) -> JsonConstraint | None:
    """Read OpenAI's `response_format` (text, json_object or json_schema).

    `strict` is accepted either way: this server always enforces the schema by grammar,
    so a non-strict request gets the same guarantee.
    """
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("'response_format' must be an object", param="response_format")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return _constraint(ANY_JSON_OBJECT, "response_format")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequest(
                "'response_format.json_schema' must be an object",
                param="response_format.json_schema",
            )
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidRequest(
                "'response_format.json_schema.name' must be a string",
                param="response_format.json_schema.name",
            )
        strict = spec.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise InvalidRequest(
                "'response_format.json_schema.strict' must be true or false",
                param="response_format.json_schema.strict",
            )
        # OpenAI: a missing schema means any JSON object.
        schema = spec.get("schema", ANY_JSON_OBJECT)
        return _constraint(schema, "response_format.json_schema.schema")
    raise InvalidRequest(
        "'response_format.type' must be one of 'text', 'json_object', 'json_schema'",
        param="response_format.type",
    )
