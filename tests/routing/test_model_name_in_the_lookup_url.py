"""A model name is one path segment of the route look-up: it cannot reach another endpoint."""

import pytest

from routing import InvalidRequest, ModelNotConfigured


async def test_slashes_are_sent_encoded_and_come_back_as_the_same_name(make_router, admin_state):
    router = make_router(use_default_route=False)
    with pytest.raises(ModelNotConfigured):
        await router.route("hf.co/org/model:q4")
    # The stand-in decodes %2F like the admin: the whole name arrived as the route's name.
    assert admin_state.lookups == [("hf.co/org/model:q4", None)]


@pytest.mark.parametrize("name", ["..", ".", "a/../b", "a\nb", "a\x7fb", "m" * 1025, ""])
async def test_dot_segments_control_characters_and_huge_names_are_refused(make_router, admin_state, name):  # fmt: skip
    router = make_router(use_default_route=False)
    with pytest.raises(InvalidRequest, match="^model "):
        await router.route(name)
    assert admin_state.lookups == []  # refused before any look-up
