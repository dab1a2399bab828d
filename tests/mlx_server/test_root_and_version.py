"""GET / and GET /api/version, as Ollama answers them."""

import httpx


def test_it_answers_root_like_ollama(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Ollama is running"
    assert response.headers["content-type"].startswith("text/plain")


def test_it_reports_a_version_string(client: httpx.Client) -> None:
    response = client.get("/api/version")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"version"}
    assert isinstance(body["version"], str) and body["version"].count(".") == 2


def test_it_answers_unknown_paths_with_404_in_protocol_shape(client: httpx.Client) -> None:
    openai = client.get("/v1/nothing-here")
    assert openai.status_code == 404
    assert set(openai.json()["error"]) == {"message", "type", "param", "code"}
    ollama = client.get("/api/nothing-here")
    assert ollama.status_code == 404
    assert isinstance(ollama.json()["error"], str)
