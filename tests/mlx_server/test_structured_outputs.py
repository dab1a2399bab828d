"""Answers constrained by a JSON schema always validate, even from the random-weight model.

Through the official clients, at temperature 1, alone and batched with unconstrained requests.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import httpx
import jsonschema
import ollama
import openai
import pytest
from pydantic import BaseModel, Field

from .conftest import MODEL_NAME, ServerProcess

MESSAGES: list[Any] = [{"role": "user", "content": "Describe a person as JSON."}]

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "role"],
}
SCORES: dict[str, Any] = {
    "type": "array",
    "items": {"type": "number", "minimum": -1.5, "maximum": 2.5},
    "minItems": 1,
    "maxItems": 4,
}
NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "owner": PERSON,
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "active": {"type": "boolean"},
    },
    "required": ["owner", "tags", "active"],
}
EITHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pet": {
            "anyOf": [
                {"type": "null"},
                {"type": "integer", "minimum": 1, "maximum": 9},
                {
                    "type": "object",
                    "properties": {"kind": {"enum": ["cat", "dog"]}},
                    "required": ["kind"],
                },
            ]
        }
    },
    "required": ["pet"],
}
SCHEMAS: list[dict[str, Any]] = [PERSON, SCORES, NESTED, EITHER]


def schema_format(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def validates(text: str, schema: dict[str, Any]) -> bool:
    """Tell whether `text` is JSON valid against `schema`."""
    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def test_twenty_openai_answers_in_a_row_validate(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    answers = []
    for i in range(20):
        schema = SCHEMAS[i % len(SCHEMAS)]
        answer = client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            temperature=1,
            max_tokens=400,
            response_format=schema_format(schema),
        )
        answers.append((answer.choices[0].message.content or "", schema))
        assert answer.choices[0].finish_reason == "stop"
    assert [validates(text, schema) for text, schema in answers] == [True] * 20


async def test_twenty_answers_validate_when_batched_with_free_text(server: ServerProcess) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused")

    async def constrained(i: int) -> tuple[str, dict[str, Any]]:
        schema = SCHEMAS[i % len(SCHEMAS)]
        answer = await client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            temperature=1,
            max_tokens=400,
            response_format=schema_format(schema),
        )
        return answer.choices[0].message.content or "", schema

    async def free(i: int) -> str:
        answer = await client.completions.create(
            model=MODEL_NAME, prompt="Once upon a time", max_tokens=60, temperature=1, seed=i
        )
        return answer.choices[0].text

    constrained_answers, free_texts = await asyncio.gather(
        asyncio.gather(*[constrained(i) for i in range(20)]),
        asyncio.gather(*map(free, range(8))),
    )
    assert [validates(text, schema) for text, schema in constrained_answers] == [True] * 20
    # The unconstrained neighbours were not masked by anyone's grammar: free text.
    assert not any(text.startswith(("{", "[")) for text in free_texts)


def test_twenty_ollama_answers_validate(server: ServerProcess) -> None:
    client = ollama.Client(host=server.base_url)
    texts = []
    for i in range(20):
        schema = SCHEMAS[i % len(SCHEMAS)]
        answer = client.chat(
            model=MODEL_NAME,
            messages=MESSAGES,
            format=schema,
            options={"temperature": 1, "num_predict": 400},
        )
        assert answer.done_reason == "stop"
        texts.append((answer.message.content or "", schema))
    assert [validates(text, schema) for text, schema in texts] == [True] * 20


def test_ollama_json_mode_answers_an_object(server: ServerProcess) -> None:
    client = ollama.Client(host=server.base_url)
    answer = client.generate(
        model=MODEL_NAME, prompt="hi", format="json", options={"seed": 3, "num_predict": 200}
    )
    assert answer.done_reason == "stop"
    assert isinstance(json.loads(answer.response or ""), dict)


class Pet(BaseModel):
    kind: Literal["cat", "dog", "fish"]
    legs: int = Field(ge=0, le=4)


class Owner(BaseModel):
    name: str = Field(max_length=8)
    pets: list[Pet] = Field(max_length=2)


def test_the_openai_client_parses_into_a_pydantic_model(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    for _ in range(3):
        answer = client.chat.completions.parse(
            model=MODEL_NAME, messages=MESSAGES, response_format=Owner, max_tokens=400
        )
        parsed = answer.choices[0].message.parsed
        assert isinstance(parsed, Owner)
        assert len(parsed.name) <= 8 and len(parsed.pets) <= 2


def test_a_seeded_constrained_answer_is_the_same_alone_and_batched(
    server: ServerProcess,
) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": MESSAGES,
        "seed": 11,
        "temperature": 1,
        "max_tokens": 400,
        "response_format": schema_format(NESTED),
    }
    alone = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60).json()

    async def batched() -> list[Any]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            noise = {"model": MODEL_NAME, "prompt": "Why", "max_tokens": 80}
            answers = await asyncio.gather(
                http.post("/v1/completions", json=noise),
                http.post("/v1/chat/completions", json=body),
                http.post("/v1/completions", json=noise),
            )
            return [a.json() for a in answers]

    together = asyncio.run(batched())[1]
    text = alone["choices"][0]["message"]["content"]
    assert together["choices"][0]["message"]["content"] == text
    assert validates(text, NESTED)


def test_a_length_stop_returns_the_json_so_far(client: httpx.Client) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": MESSAGES,
        "max_tokens": 3,
        "response_format": schema_format(PERSON),
    }
    answer = client.post("/v1/chat/completions", json=body).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length"
    # The JSON so far: a prefix of a valid answer, itself not valid.
    text = choice["message"]["content"]
    assert text and text[:9] == '{"name":"'[: len(text[:9])]
    assert not validates(text, PERSON)


def test_a_streamed_constrained_answer_validates(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        max_tokens=400,
        response_format=schema_format(EITHER),
        stream=True,
    )
    assert validates("".join(c.choices[0].delta.content or "" for c in stream), EITHER)


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "object", "not": {"required": ["a"]}}, "'not'"),
        ({"type": "array", "uniqueItems": True}, "'uniqueItems'"),
        ({"type": "object", "if": {}, "then": {}}, "'if'"),
    ],
)
def test_it_names_an_unsupported_keyword(
    client: httpx.Client, schema: dict[str, Any], named: str
) -> None:
    openai_body = {
        "model": MODEL_NAME,
        "messages": MESSAGES,
        "response_format": schema_format(schema),
    }
    response = client.post("/v1/chat/completions", json=openai_body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "response_format.json_schema.schema" and named in error["message"]
    ollama_body = {"model": MODEL_NAME, "prompt": "hi", "format": schema, "stream": False}
    response = client.post("/api/generate", json=ollama_body)
    assert response.status_code == 400 and named in response.json()["error"]
    assert "'format'" in response.json()["error"]


def test_it_rejects_an_invalid_schema(client: httpx.Client) -> None:
    bad = schema_format({"type": "object", "properties": {"a": {"type": "bogus"}}})
    response = client.post(
        "/v1/chat/completions",
        json={"model": MODEL_NAME, "messages": MESSAGES, "response_format": bad},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "response_format.json_schema.schema"
    assert "properties/a/type" in error["message"]
    ollama_client = ollama.Client(host=str(client.base_url))
    with pytest.raises(ollama.ResponseError) as raised:
        ollama_client.chat(model=MODEL_NAME, messages=MESSAGES, format={"type": 3})  # type: ignore[arg-type]
    assert raised.value.status_code == 400 and "'format'" in str(raised.value)


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ("json", "response_format"),
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema", "json_schema": []}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"schema": 5}},
            "response_format.json_schema.schema",
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {}, "strict": "yes"}},
            "response_format.json_schema.strict",
        ),
    ],
)
def test_it_rejects_a_malformed_response_format(
    client: httpx.Client, response_format: Any, param: str
) -> None:
    body = {"model": MODEL_NAME, "messages": MESSAGES, "response_format": response_format}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_it_rejects_a_malformed_ollama_format(client: httpx.Client) -> None:
    response = client.post(
        "/api/chat", json={"model": MODEL_NAME, "messages": MESSAGES, "format": "yaml"}
    )
    assert response.status_code == 400 and "'format'" in response.json()["error"]


def test_a_constrained_turn_reuses_the_prompt_cache(lone_server: ServerProcess) -> None:
    system = {"role": "system", "content": "You describe people as JSON. " * 20}
    body = {
        "model": MODEL_NAME,
        "max_tokens": 400,
        "response_format": schema_format(PERSON),
    }
    url = f"{lone_server.base_url}/v1/chat/completions"
    first = httpx.post(url, json={**body, "messages": [system, *MESSAGES]}, timeout=60).json()
    turn = [
        system,
        *MESSAGES,
        {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
        {"role": "user", "content": "Another one."},
    ]
    second = httpx.post(url, json={**body, "messages": turn}, timeout=60).json()
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > 100
    assert validates(second["choices"][0]["message"]["content"], PERSON)
