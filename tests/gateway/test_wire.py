"""The gateway's JSON and timestamp encoders write what the slower, obvious code wrote."""

from __future__ import annotations

import json
import time

import pytest

from athena_admin.gateway.wire import compact, go_json, rfc3339nano

TRICKY = ["", "plain", 'quote " and \\ backslash', "tab\tnew\nline\x00\x1f", "é ü 漢字 🙂", "<a href='x'>&amp;</a>", "line\u2028para\u2029"]  # fmt: skip


@pytest.mark.parametrize("text", TRICKY)
def test_a_string_encodes_as_json_dumps_does(text):
    assert compact(text) == json.dumps(text, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(go_json(text)) == text
    assert not {"<", ">", "&", "\u2028", "\u2029"} & set(go_json(text))


def test_objects_still_encode_compactly():
    obj = {"a": [1, 2.5, None, True], "b": {"c": "<d>"}}
    assert compact(obj) == '{"a":[1,2.5,null,true],"b":{"c":"<d>"}}'
    assert go_json(obj) == '{"a":[1,2.5,null,true],"b":{"c":"\\u003cd\\u003e"}}'


def _rfc3339nano_uncached(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def test_timestamps_are_right_across_seconds_and_round_fractions():
    start = 1_721_681_271 * 1_000_000_000
    for ns in (start, start + 147_561_000, start + 999_999_999, start + 1_000_000_000, start + 1_000_000_001, start - 1, 0):  # fmt: skip
        assert rfc3339nano(ns) == _rfc3339nano_uncached(ns)
    assert rfc3339nano(start + 147_561_000) == "2024-07-22T20:47:51.147561Z"
