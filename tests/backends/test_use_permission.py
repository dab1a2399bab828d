"""`backends.use_llmbackend`: made by a migration and given to both operator groups."""

import pytest
from django.contrib.auth.models import Group

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("group", ["LLM viewers", "LLM operators"])
def test_the_migration_gives_both_groups_the_use_permission(group: str) -> None:
    # The groups as the migrations left them (not remade by the persona fixtures).
    codenames = Group.objects.get(name=group).permissions.values_list("codename", flat=True)
    assert "use_llmbackend" in codenames


def test_a_user_in_no_group_lacks_it_and_a_superuser_has_it(stranger, superuser, viewer) -> None:
    assert not stranger.has_perm("backends.use_llmbackend")
    assert viewer.has_perm("backends.use_llmbackend")
    assert superuser.has_perm("backends.use_llmbackend")
