"""The registry's storage contract: the plan's table name, one stored upstream_model per path."""

import pytest
from django.db import connection

from backends.models import LLMBackend

pytestmark = pytest.mark.django_db


def test_the_registry_table_is_named_llm_backends() -> None:
    assert LLMBackend._meta.db_table == "llm_backends"
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('llm_backends') IS NOT NULL")
        assert cursor.fetchone() == (True,)


def test_an_entry_made_through_the_orm_stores_its_upstream_model() -> None:
    entry = LLMBackend.objects.create(
        model_name="phi3:mini", backend_type="ollama", endpoint_url="http://127.0.0.1:11434"
    )
    stored = LLMBackend.objects.values_list("upstream_model", flat=True).get(pk=entry.pk)
    assert stored == "phi3:mini"


def test_an_explicit_upstream_model_is_kept() -> None:
    LLMBackend.objects.create(
        model_name="alias",
        backend_type="ollama",
        endpoint_url="http://127.0.0.1:11434",
        upstream_model="phi3:mini",
    )
    assert LLMBackend.objects.get(model_name="alias").upstream_model == "phi3:mini"


def test_a_save_with_update_fields_that_renames_also_writes_the_upstream_model() -> None:
    entry = LLMBackend.objects.create(
        model_name="a", backend_type="ollama", endpoint_url="http://127.0.0.1:11434"
    )
    entry.model_name, entry.upstream_model = "b", ""
    entry.save(update_fields=["model_name"])
    assert LLMBackend.objects.values_list("upstream_model", flat=True).get(pk=entry.pk) == "b"
