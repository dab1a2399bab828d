"""Shared personas and factories: an operator, a viewer, a stranger, service keys."""

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from rest_framework.test import APIClient

from backends.models import LLMBackend
from backends.services import backend_create, service_key_create, service_keys_revoke

# The test upstreams (Ollama- and OpenAI-protocol servers) for every suite that needs them.
pytest_plugins = ["tests.upstreams.fixtures"]


def _group(name: str) -> Group:
    # Transactional tests flush the database, data-migration rows included: remake them.
    if not Group.objects.filter(name=name).exists():
        importlib.import_module("backends.migrations.0002_groups").create_groups(django_apps, None)
        # What the later migration adds to both groups: using the models at the gateway.
        use = Permission.objects.get(content_type__app_label="backends", codename="use_llmbackend")
        for group in Group.objects.filter(name__in=["LLM viewers", "LLM operators"]):
            group.permissions.add(use)
    return Group.objects.get(name=name)


def _user(username: str, group: str | None = None, **extra: Any) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True, **extra)
    if group:
        user.groups.add(_group(group))
    return user


@pytest.fixture
def operator(db: None) -> User:
    return _user("olivia", "LLM operators")


@pytest.fixture
def viewer(db: None) -> User:
    return _user("victor", "LLM viewers")


@pytest.fixture
def stranger(db: None) -> User:
    """Signed in, but in no group."""
    return _user("sam")


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root", "", "pw-root")


@pytest.fixture
def service_key(db: None) -> str:
    return service_key_create(name="orchestrator")[1]


@pytest.fixture
def revoked_key(db: None) -> str:
    key, raw = service_key_create(name="old")
    service_keys_revoke(keys=type(key).objects.filter(pk=key.pk))
    return raw


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def api_as(api: APIClient) -> Callable[[Any], APIClient]:
    """Authenticate the client as a user, an API key string, or nobody (None)."""

    def login(who: Any) -> APIClient:
        if isinstance(who, str):
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {who}")
        elif who is not None:
            api.force_authenticate(who)
        return api

    return login


@pytest.fixture
def make_entry(db: None) -> Callable[..., LLMBackend]:
    def make(model_name: str = "phi3:mini", **fields: Any) -> LLMBackend:
        fallbacks = fields.pop("fallbacks", None)
        values = {"backend_type": "ollama", "endpoint_url": "http://127.0.0.1:11434", **fields}
        return backend_create(fields={"model_name": model_name, **values}, fallbacks=fallbacks)

    return make
