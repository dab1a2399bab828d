"""The registry as YAML: export, import, dry run, prune, and refusing bad files whole."""

from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from backends.models import FallbackLink, LLMBackend
from backends.registry_yaml import RegistryFileError, registry_apply, registry_to_yaml

pytestmark = pytest.mark.django_db

OLLAMA = "http://127.0.0.1:11434"
MLX = "http://127.0.0.1:11435"


def _snapshot() -> list[dict[str, Any]]:
    """Everything an import may change, keyed by name rather than id."""
    rows = []
    for entry in LLMBackend.objects.order_by("model_name"):
        chain = [
            link.fallback.model_name
            for link in FallbackLink.objects.filter(entry=entry).order_by("position")
        ]
        rows.append(
            {
                "model_name": entry.model_name,
                "backend_type": entry.backend_type,
                "endpoint_url": entry.endpoint_url,
                "upstream_model": entry.upstream_model,
                "enabled": entry.enabled,
                "priority": entry.priority,
                "max_tokens": entry.max_tokens,
                "temperature_default": entry.temperature_default,
                "timeout_seconds": entry.timeout_seconds,
                "first_token_timeout_seconds": entry.first_token_timeout_seconds,
                "description": entry.description,
                "fallbacks": chain,
            }
        )
    return rows


def _file(*entries: dict[str, Any], version: Any = 1) -> str:
    return yaml.safe_dump({"version": version, "backends": list(entries)}, sort_keys=False)


def _entry(name: str, **fields: Any) -> dict[str, Any]:
    return {"model_name": name, "backend_type": "ollama", "endpoint_url": OLLAMA, **fields}


@pytest.fixture
def lab(make_entry: Callable[..., LLMBackend]) -> None:
    """A small home lab: an MLX model falling back to two Ollama models."""
    make_entry("phi3:mini", description="Ollama's phi3", priority=20)
    make_entry("llama3.2:latest", temperature_default=0.0, max_tokens=512)
    make_entry(
        "phi3:mini-synthesis",
        backend_type="mlx",
        endpoint_url=MLX,
        upstream_model="phi3-mini-4bit",
        timeout_seconds=30,
        first_token_timeout_seconds=10,
        enabled=False,
        fallbacks=["phi3:mini", "llama3.2:latest"],
    )


def _import(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("import_registry", str(path), *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _import_fails(path: Path, *args: str) -> str:
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("import_registry", str(path), *args, stdout=StringIO(), stderr=err)
    return err.getvalue()


def test_export_writes_every_entry_in_name_order_without_metrics_or_ids(lab: None) -> None:
    LLMBackend.objects.update(total_requests=7, avg_latency_ms=12.5)
    document = yaml.safe_load(registry_to_yaml())
    assert document["version"] == 1
    names = [row["model_name"] for row in document["backends"]]
    assert names == ["llama3.2:latest", "phi3:mini", "phi3:mini-synthesis"]
    synthesis = document["backends"][2]
    assert synthesis == {
        "model_name": "phi3:mini-synthesis",
        "backend_type": "mlx",
        "endpoint_url": MLX,
        "upstream_model": "phi3-mini-4bit",
        "enabled": False,
        "priority": 100,
        "max_tokens": 2048,
        "temperature_default": 0.7,
        "timeout_seconds": 30,
        "first_token_timeout_seconds": 10,
        "description": "",
        "fallbacks": ["phi3:mini", "llama3.2:latest"],
    }


def test_export_is_byte_stable(lab: None) -> None:
    assert registry_to_yaml() == registry_to_yaml()


def test_export_command_writes_to_a_file_or_stdout(lab: None, tmp_path: Path) -> None:
    target = tmp_path / "registry.yaml"
    call_command("export_registry", "-o", str(target))
    out = StringIO()
    call_command("export_registry", stdout=out)
    assert target.read_text() == out.getvalue() == registry_to_yaml()


def test_round_trip_on_an_empty_database_reproduces_the_registry(lab: None, tmp_path: Path) -> None:
    before = _snapshot()
    path = tmp_path / "registry.yaml"
    call_command("export_registry", "-o", str(path))
    LLMBackend.objects.all().delete()

    output = _import(path)

    assert _snapshot() == before
    assert "Imported: 3 created, 0 updated, 0 unchanged, 0 deleted." in output
    assert path.read_text() == registry_to_yaml()


def test_fallbacks_may_name_entries_later_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(_file(_entry("a", fallbacks=["c", "b"]), _entry("b"), _entry("c")))
    _import(path)
    assert _snapshot()[0]["fallbacks"] == ["c", "b"]


def test_importing_an_export_again_changes_nothing(lab: None, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(registry_to_yaml())
    stamps = list(LLMBackend.objects.values_list("updated_at", flat=True))
    output = _import(path)
    assert "0 created, 0 updated, 3 unchanged" in output
    assert list(LLMBackend.objects.values_list("updated_at", flat=True)) == stamps


def test_it_updates_entries_in_place_by_model_name(lab: None, tmp_path: Path) -> None:
    ids = dict(LLMBackend.objects.values_list("model_name", "pk"))
    document = yaml.safe_load(registry_to_yaml())
    document["backends"][1]["endpoint_url"] = "http://192.168.1.20:11434"
    document["backends"][2]["fallbacks"] = ["llama3.2:latest"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(document))

    output = _import(path)

    assert "update phi3:mini (endpoint_url)" in output
    assert "update phi3:mini-synthesis (fallbacks)" in output
    assert dict(LLMBackend.objects.values_list("model_name", "pk")) == ids
    assert LLMBackend.objects.get(model_name="phi3:mini").endpoint_url.startswith("http://192.")
    assert _snapshot()[2]["fallbacks"] == ["llama3.2:latest"]


def test_it_can_reverse_a_chain_in_one_import(
    make_entry: Callable[..., LLMBackend], tmp_path: Path
) -> None:
    make_entry("b")
    make_entry("a", fallbacks=["b"])
    path = tmp_path / "r.yaml"
    path.write_text(_file(_entry("a"), _entry("b", fallbacks=["a"])))
    _import(path)
    assert [r["fallbacks"] for r in _snapshot()] == [[], ["a"]]


def test_fields_the_file_leaves_out_take_their_defaults(
    make_entry: Callable[..., LLMBackend], tmp_path: Path
) -> None:
    make_entry("phi3:mini", priority=5, description="old")
    path = tmp_path / "r.yaml"
    path.write_text(_file(_entry("phi3:mini")))
    _import(path)
    entry = LLMBackend.objects.get()
    assert (entry.priority, entry.description, entry.upstream_model) == (100, "", "phi3:mini")


def test_dry_run_prints_the_plan_and_changes_nothing(lab: None, tmp_path: Path) -> None:
    before = _snapshot()
    document = yaml.safe_load(registry_to_yaml())
    document["backends"][0]["priority"] = 1
    document["backends"][2]["description"] = "MLX first"
    document["backends"][2]["fallbacks"] = ["llama3.2:latest"]
    document["backends"].append(_entry("qwen2.5:7b"))
    del document["backends"][1]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(document))

    output = _import(path, "--dry-run", "--prune")

    assert output.splitlines() == [
        "create qwen2.5:7b",
        "update llama3.2:latest (priority)",
        "update phi3:mini-synthesis (description, fallbacks)",
        "delete phi3:mini",
        "Dry run: 1 to create, 2 to update, 0 unchanged, 1 to delete. Nothing was changed.",
    ]
    assert _snapshot() == before


def test_prune_deletes_entries_the_file_does_not_name(lab: None, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(_file(_entry("phi3:mini")))
    assert "delete llama3.2:latest" in _import(path, "--prune")
    assert list(LLMBackend.objects.values_list("model_name", flat=True)) == ["phi3:mini"]


def test_without_prune_other_entries_are_kept(lab: None, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(_file(_entry("qwen2.5:7b", fallbacks=["phi3:mini"])))
    _import(path)
    assert LLMBackend.objects.count() == 4


def test_prune_refuses_a_fallback_to_an_entry_it_would_delete(lab: None, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(_file(_entry("qwen2.5:7b", fallbacks=["phi3:mini"])))
    errors = _import_fails(path, "--prune")
    assert "entry #1 'qwen2.5:7b', field fallbacks: no entry named 'phi3:mini'" in errors
    assert LLMBackend.objects.count() == 3


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            _entry("x", endpoint_url="http://169.254.169.254/"),
            "entry #2 'x', field endpoint_url: Endpoint URL address 169.254.169.254 is never",
        ),
        (
            _entry("x", endpoint_url="ftp://127.0.0.1/"),
            "entry #2 'x', field endpoint_url: Endpoint URL must start with http://",
        ),
        (
            _entry("x", backend_type="vllm"),
            "entry #2 'x', field backend_type: Value 'vllm' is not a valid choice.",
        ),
        (_entry("x", fallbacks=["nope"]), "entry #2 'x', field fallbacks: no entry named 'nope'"),
        (_entry("x", fallbacks=["x"]), "entry #2 'x', field fallbacks: an entry cannot fall"),
        (_entry("x", priority="high"), "entry #2 'x', field priority: must be an integer"),
        (_entry("x", enabled="yes"), "entry #2 'x', field enabled: must be true or false"),
        (_entry("x", timeout_seconds=0), "entry #2 'x', field timeout_seconds: Ensure this"),
        (
            _entry("x", timeout_seconds=30, first_token_timeout_seconds=31),
            "entry #2 'x', field first_token_timeout_seconds: Must be at most timeout_seconds",
        ),
        (
            _entry("x", first_token_timeout_seconds="soon"),
            "entry #2 'x', field first_token_timeout_seconds: must be an integer",
        ),
        (_entry("x", endpoint="http://x"), "entry #2 'x', field endpoint: unknown field"),
        (
            {"backend_type": "ollama", "endpoint_url": OLLAMA},
            "entry #2, field model_name: required",
        ),
        (_entry("bad name"), "entry #2 'bad name', field model_name: Use letters"),
        (_entry("phi3:mini"), "entry #2 'phi3:mini', field model_name: 'phi3:mini' appears more"),
        ("just a string", "entry #2: must be a mapping of fields, not a string"),
    ],
)
def test_an_invalid_entry_names_entry_and_field_and_changes_nothing(
    lab: None, tmp_path: Path, entry: Any, expected: str
) -> None:
    before = _snapshot()
    good = _entry("phi3:mini", endpoint_url="http://10.0.0.5:11434")
    path = tmp_path / "r.yaml"
    path.write_text(_file(good, entry))
    errors = _import_fails(path)
    assert expected in errors
    assert _snapshot() == before


def test_a_cycle_across_entries_is_refused(lab: None, tmp_path: Path) -> None:
    before = _snapshot()
    path = tmp_path / "r.yaml"
    path.write_text(
        _file(
            _entry("a", fallbacks=["b"]),
            _entry("b", fallbacks=["phi3:mini-synthesis"]),
            _entry("phi3:mini", fallbacks=["a"]),
        )
    )
    errors = _import_fails(path)
    # phi3:mini-synthesis keeps its chain (-> phi3:mini) since the file does not name it.
    assert (
        "entry #1 'a', field fallbacks: makes a cycle: "
        "a -> b -> phi3:mini-synthesis -> phi3:mini -> a"
    ) in errors
    assert _snapshot() == before


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        _file(_entry("a", backend_type="vllm"), _entry("b", endpoint_url="http://169.254.1.1"))
    )
    errors = _import_fails(path).splitlines()
    assert [line.split(":")[0] for line in errors] == [
        "entry #1 'a', field backend_type",
        "entry #2 'b', field endpoint_url",
    ]
    assert not LLMBackend.objects.exists()


def test_field_and_chain_problems_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(_file(_entry("a", max_tokens=0), _entry("b", fallbacks=["a", "ghost"])))
    errors = _import_fails(path).splitlines()
    assert [line.split(":")[0] for line in errors] == [
        "entry #1 'a', field max_tokens",
        "entry #2 'b', field fallbacks",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nbackends: [\n", "file: not valid YAML at line"),
        ("- model_name: a\n", "file: the top level must be a mapping"),
        ("", "file: the top level must be a mapping with 'version' and 'backends', not empty"),
        ("version: 2\nbackends: []\n", "file, field version: must be 1, got 2"),
        ("version: 1\nbackends: {a: 1}\n", "file, field backends: must be a list"),
        ("version: 1\nbackend: []\n", "file: unknown top-level key(s): backend"),
    ],
)
def test_a_malformed_file_is_refused(lab: None, tmp_path: Path, text: str, expected: str) -> None:
    before = _snapshot()
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert expected in _import_fails(path)
    assert _snapshot() == before


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_registry", str(tmp_path / "nope.yaml"))


def test_the_plan_function_raises_with_every_problem(tmp_path: Path) -> None:
    with pytest.raises(RegistryFileError) as caught:
        registry_apply(_file(_entry("a", priority=True), _entry("b", max_tokens=0)))
    assert len(caught.value.problems) == 2


def test_the_admin_exports_the_selected_entries(lab: None, operator: User) -> None:
    client = Client()
    client.force_login(operator)
    chosen = LLMBackend.objects.filter(model_name__startswith="phi3")
    response = client.post(
        "/admin/backends/llmbackend/",
        {"action": "export_selected_yaml", "_selected_action": [e.pk for e in chosen]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    assert "attachment" in response["Content-Disposition"]
    document = yaml.safe_load(response.content)
    assert [row["model_name"] for row in document["backends"]] == [
        "phi3:mini",
        "phi3:mini-synthesis",
    ]
