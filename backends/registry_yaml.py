"""The registry as a YAML file, so a setup can live in git: export, plan, import.

The file is declarative: an entry's fields that the file leaves out take the model's
defaults, and `fallbacks` (model names, in order) replaces the entry's whole chain. Nothing
measured (metrics, health) and no database id is written, so two exports of the same setup
are byte-identical and diff cleanly.

    version: 1
    backends:
    - model_name: phi3:mini
      backend_type: ollama
      endpoint_url: http://127.0.0.1:11434
      ...
      fallbacks: []
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from backends import services
from backends.models import FallbackLink, LLMBackend

__all__ = [
    "REGISTRY_FILE_VERSION",
    "RegistryFileError",
    "RegistryPlan",
    "registry_apply",
    "registry_export",
    "registry_plan",
    "registry_to_yaml",
]

REGISTRY_FILE_VERSION = 1

# The field order of an exported entry; `fallbacks` comes last.
ENTRY_FIELDS = services.BACKEND_FIELDS
REQUIRED_FIELDS = ("model_name", "backend_type", "endpoint_url")
# The YAML types each field accepts. bool is a subclass of int, so it is refused explicitly.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model_name": (str,),
    "backend_type": (str,),
    "endpoint_url": (str,),
    "upstream_model": (str,),
    "enabled": (bool,),
    "priority": (int,),
    "max_tokens": (int,),
    "temperature_default": (int, float),
    "timeout_seconds": (int,),
    "first_token_timeout_seconds": (int,),
    "description": (str,),
}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}


class RegistryFileError(Exception):
    """The file cannot be imported; `problems` lists every reason, each naming entry and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class RegistryPlan:
    """What an import does: model names to create, update (with changed fields), keep, delete."""

    create: list[str] = field(default_factory=list)
    update: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    # The validated entries, keyed by model name: model fields plus "fallbacks".
    entries: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)

    def lines(self) -> list[str]:
        """The plan, one line per entry, in a stable order."""
        out = [f"create {name}" for name in self.create]
        out += [f"update {name} ({', '.join(fields)})" for name, fields in self.update.items()]
        out += [f"unchanged {name}" for name in self.unchanged]
        out += [f"delete {name}" for name in self.delete]
        return out


# --- export ---


def _chains() -> dict[int, list[str]]:
    chains: dict[int, list[str]] = {}
    links = FallbackLink.objects.select_related("fallback").order_by("entry_id", "position")
    for link in links:
        chains.setdefault(link.entry_id, []).append(link.fallback.model_name)
    return chains


def registry_export(entries: QuerySet[LLMBackend] | None = None) -> dict[str, Any]:
    """Return the entries (all by default) as the file's structure, ordered by model name."""
    chains = _chains()
    selected = (LLMBackend.objects.all() if entries is None else entries).order_by("model_name")
    backends = []
    for entry in selected:
        row: dict[str, Any] = {name: getattr(entry, name) for name in ENTRY_FIELDS}
        row["upstream_model"] = entry.resolved_upstream_model
        row["fallbacks"] = chains.get(entry.pk, [])
        backends.append(row)
    return {"version": REGISTRY_FILE_VERSION, "backends": backends}


def registry_to_yaml(entries: QuerySet[LLMBackend] | None = None) -> str:
    """Return the entries as YAML text (see the module docstring for the shape)."""
    header = "# Athena LLM registry. Import with: python manage.py import_registry FILE\n"
    body = yaml.safe_dump(
        registry_export(entries), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return header + body


# --- parse and validate ---


def _load(text: str) -> list[Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RegistryFileError([f"file: not valid YAML{where}: {problem}"]) from None
    if not isinstance(document, dict):
        raise RegistryFileError(
            [
                "file: the top level must be a mapping with 'version' and 'backends', "
                f"not {_kind(document)}"
            ]
        )
    problems = []
    unknown = sorted(set(map(str, document)) - {"version", "backends"})
    if unknown:
        problems.append(f"file: unknown top-level key(s): {', '.join(unknown)}")
    if document.get("version") != REGISTRY_FILE_VERSION:
        problems.append(
            f"file, field version: must be {REGISTRY_FILE_VERSION}, got {document.get('version')!r}"
        )
    backends = document.get("backends")
    if backends is None:
        backends = []
    if not isinstance(backends, list):
        problems.append(f"file, field backends: must be a list of entries, not {_kind(backends)}")
    if problems:
        raise RegistryFileError(problems)
    return backends


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _label(index: int, raw: Any) -> str:
    name = raw.get("model_name") if isinstance(raw, dict) else None
    return f"entry #{index + 1} '{name}'" if isinstance(name, str) else f"entry #{index + 1}"


def _check_shape(raw: Any, label: str) -> list[str]:
    """Problems with keys and types, before the model's own validation runs."""
    if not isinstance(raw, dict):
        return [f"{label}: must be a mapping of fields, not {_kind(raw)}"]
    problems = []
    for key in raw:
        if key not in _FIELD_TYPES and key != "fallbacks":
            problems.append(f"{label}, field {key}: unknown field")
    for name in REQUIRED_FIELDS:
        if raw.get(name) in (None, ""):
            problems.append(f"{label}, field {name}: required")
    for name, types in _FIELD_TYPES.items():
        value = raw.get(name)
        if value is None or (name in REQUIRED_FIELDS and value == ""):
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            problems.append(f"{label}, field {name}: must be {_TYPE_NAMES[types[0]]}")
    chain = raw.get("fallbacks")
    if chain is not None and (
        not isinstance(chain, list) or not all(isinstance(n, str) for n in chain)
    ):
        problems.append(f"{label}, field fallbacks: must be a list of model names")
    return problems


def _validated_entry(raw: dict[str, Any], existing: LLMBackend | None, label: str) -> list[str]:
    """Run the model's validation (choices, ranges, the endpoint SSRF check) on one entry."""
    candidate = LLMBackend() if existing is None else LLMBackend(pk=existing.pk)
    for name in ENTRY_FIELDS:
        if raw.get(name) is not None:
            setattr(candidate, name, raw[name])
    try:
        candidate.full_clean(validate_unique=False)
    except ValidationError as exc:
        return [
            f"{label}, field {name}: {' '.join(messages)}"
            for name, messages in exc.message_dict.items()
        ]
    # full_clean normalised the values (and filled upstream_model): keep those.
    raw.update({name: getattr(candidate, name) for name in ENTRY_FIELDS})
    return []


def _chain_problems(
    entries: dict[str, dict[str, Any]], labels: dict[str, str], kept: dict[str, list[str]]
) -> list[str]:
    """Unknown, repeated or self fallbacks, and cycles in the registry the import leaves."""
    graph = {**kept, **{name: raw["fallbacks"] for name, raw in entries.items()}}
    problems = []
    for name, raw in entries.items():
        chain, label = raw["fallbacks"], labels[name]
        for fallback in chain:
            if fallback == name:
                problems.append(f"{label}, field fallbacks: an entry cannot fall back to itself")
            elif fallback not in graph:
                problems.append(
                    f"{label}, field fallbacks: no entry named '{fallback}' "
                    "in the file or the registry"
                )
        if len(set(chain)) != len(chain):
            problems.append(f"{label}, field fallbacks: a model may appear only once in the chain")
    if problems:
        return problems
    in_reported_cycle: set[str] = set()
    for name in entries:
        cycle = None if name in in_reported_cycle else _cycle_from(name, graph)
        if cycle:
            in_reported_cycle.update(cycle)
            problems.append(f"{labels[name]}, field fallbacks: makes a cycle: {' -> '.join(cycle)}")
    return problems


def _cycle_from(start: str, graph: dict[str, list[str]]) -> list[str] | None:
    """The first path from start back to start, if any."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, []):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def registry_plan(text: str, *, prune: bool = False) -> RegistryPlan:
    """Parse and validate a registry file against the database; raise RegistryFileError.

    Every entry is checked before anything is reported, so one run lists every problem.
    """
    rows = _load(text)
    existing = {e.model_name: e for e in LLMBackend.objects.all()}
    chains = _chains()
    current_chains = {e.model_name: chains.get(e.pk, []) for e in existing.values()}
    problems: list[str] = []
    entries: dict[str, dict[str, Any]] = {}
    labels: dict[str, str] = {}
    for index, raw in enumerate(rows):
        label = _label(index, raw)
        shape = _check_shape(raw, label)
        if shape:
            problems.extend(shape)
            continue
        name = raw["model_name"]
        if name in entries:
            problems.append(f"{label}, field model_name: '{name}' appears more than once")
            continue
        problems.extend(_validated_entry(raw, existing.get(name), label))
        entry = {**{n: raw.get(n) for n in ENTRY_FIELDS}, "fallbacks": raw.get("fallbacks") or []}
        entries[name], labels[name] = entry, label
    kept = {n: c for n, c in current_chains.items() if n not in entries and not prune}
    problems.extend(_chain_problems(entries, labels, kept))
    if problems:
        raise RegistryFileError(problems)

    plan = RegistryPlan(entries=entries)
    for name in sorted(entries):
        current = existing.get(name)
        if current is None:
            plan.create.append(name)
            continue
        changed = [
            n
            for n in ENTRY_FIELDS
            if (current.resolved_upstream_model if n == "upstream_model" else getattr(current, n))
            != entries[name][n]
        ]
        if current_chains.get(name, []) != entries[name]["fallbacks"]:
            changed.append("fallbacks")
        if changed:
            plan.update[name] = changed
        else:
            plan.unchanged.append(name)
    if prune:
        plan.delete = sorted(set(existing) - set(entries))
    return plan


# --- apply ---


def registry_apply(text: str, *, prune: bool = False, dry_run: bool = False) -> RegistryPlan:
    """Import a registry file: create or update by model name, in one transaction.

    Nothing changes unless every entry is valid. Chains are written after every entry
    exists, so the order of entries in the file does not matter.
    """
    plan = registry_plan(text, prune=prune)
    if dry_run or not plan.changes:
        return plan
    try:
        with transaction.atomic():
            _write(plan)
    except ValidationError as exc:
        # Only a concurrent edit between planning and writing can get here.
        raise RegistryFileError([f"registry changed during the import: {exc}"]) from None
    except (services.DuplicateModel, IntegrityError) as exc:
        raise RegistryFileError([f"registry changed during the import: {exc}"]) from None
    return plan


def _write(plan: RegistryPlan) -> None:
    if plan.delete:
        LLMBackend.objects.filter(model_name__in=plan.delete).delete()
    by_name = {
        e.model_name: e
        for e in LLMBackend.objects.select_for_update().filter(model_name__in=list(plan.update))
    }
    for name in plan.create:
        fields = {n: v for n, v in plan.entries[name].items() if n != "fallbacks"}
        by_name[name] = services.backend_create(fields=fields)
    for name in plan.update:
        fields = {n: v for n, v in plan.entries[name].items() if n != "fallbacks"}
        services.backend_update(entry=by_name[name], fields=fields)
    rechained = [n for n in plan.create if plan.entries[n]["fallbacks"]]
    rechained += [n for n, changed in plan.update.items() if "fallbacks" in changed]
    # Empty the chains being replaced first: the service checks each chain for cycles against
    # the registry as it stands, and an old link may close a loop the new file has removed.
    FallbackLink.objects.filter(entry__model_name__in=rechained).delete()
    for name in rechained:
        services.backend_set_fallbacks(
            entry=by_name[name], model_names=plan.entries[name]["fallbacks"]
        )
