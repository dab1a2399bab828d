"""Stop sequences: text cut before the stop, finish_reason "stop", also across chunks."""

import json

import httpx
import pytest

from mlx_server.textstream import StopScanner

from .conftest import MODEL_NAME, sse_events

PROMPT = "Why is the sky blue?"


@pytest.fixture(scope="module")
def greedy_text(server: object) -> str:
    """The tiny model's greedy answer to PROMPT, long enough to pick stops from."""
    with httpx.Client(base_url=server.base_url, timeout=30) as http:  # type: ignore[attr-defined]
        body = http.post(
            "/v1/completions",
            json={"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 40, "temperature": 0},
        ).json()
    text: str = body["choices"][0]["text"]
    assert len(text) > 30
    return text


def _a_stop_in(text: str) -> tuple[str, str]:
    """Pick a 3-character stop from the middle of the text; return it and the expected cut."""
    stop = text[15:18]
    return stop, text[: text.find(stop)]


def test_it_cuts_a_completion_before_the_stop_string(
    client: httpx.Client, greedy_text: str
) -> None:
    stop, expected = _a_stop_in(greedy_text)
    body = client.post(
        "/v1/completions",
        json={
            "model": MODEL_NAME,
            "prompt": PROMPT,
            "max_tokens": 40,
            "temperature": 0,
            "stop": stop,
        },
    ).json()
    assert body["choices"][0]["text"] == expected
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] < 40


def test_it_accepts_a_list_and_stops_at_the_earliest(
    client: httpx.Client, greedy_text: str
) -> None:
    stop, expected = _a_stop_in(greedy_text)
    body = client.post(
        "/v1/completions",
        json={
            "model": MODEL_NAME,
            "prompt": PROMPT,
            "max_tokens": 40,
            "temperature": 0,
            "stop": ["never-appears", stop],
        },
    ).json()
    assert body["choices"][0]["text"] == expected
    assert body["choices"][0]["finish_reason"] == "stop"


def test_it_never_streams_part_of_a_stop_sequence(client: httpx.Client, greedy_text: str) -> None:
    stop, expected = _a_stop_in(greedy_text)
    payload = {
        "model": MODEL_NAME,
        "prompt": PROMPT,
        "max_tokens": 40,
        "temperature": 0,
        "stop": [stop],
        "stream": True,
    }
    with client.stream("POST", "/v1/completions", json=payload) as response:
        chunks = [json.loads(e) for e in sse_events(list(response.iter_lines()))[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_it_applies_ollama_option_stop_with_done_reason_stop(client: httpx.Client) -> None:
    payload = {
        "model": MODEL_NAME,
        "prompt": PROMPT,
        "raw": True,
        "options": {"num_predict": 40, "temperature": 0},
    }
    full = client.post("/api/generate", json={**payload, "stream": False}).json()["response"]
    stop, expected = _a_stop_in(full)
    options = {"num_predict": 40, "temperature": 0, "stop": [stop]}
    streamed = client.post("/api/generate", json={**payload, "options": options})
    objects = [json.loads(line) for line in streamed.text.splitlines()]
    assert "".join(o["response"] for o in objects) == expected
    assert objects[-1]["done_reason"] == "stop"


def test_it_holds_back_a_partial_match_across_chunks() -> None:
    scanner = StopScanner(("STOP",))
    assert scanner.feed("abc ST") == "abc "
    assert scanner.feed("O") == ""
    assert scanner.feed("P and more") == ""
    assert scanner.stopped


def test_it_releases_held_text_that_turns_out_not_to_be_a_stop() -> None:
    scanner = StopScanner(("STOP",))
    assert scanner.feed("abc ST") == "abc "
    assert scanner.feed("ART") == "START"
    assert scanner.feed("xx S") == "xx "
    assert scanner.flush() == "S"
    assert not scanner.stopped
