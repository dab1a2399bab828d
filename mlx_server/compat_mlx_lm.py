"""Everything mlx_server takes from mlx-lm, in one place, checked at import.

mlx-lm has no stable API for what the engine needs to move a request out of a running
batch (batch.py): which rows are decoding, the token each row has sampled but not yet fed
(`GenerationBatch._next_tokens`) and the log-probabilities it was sampled from
(`_next_logprobs`), and how many tokens a row has produced
(`GenerationBatch._num_tokens`), all reached through `BatchGenerator._generation_batch`.
Those private attributes are read here and nowhere else. At import this module checks that
the installed mlx-lm is the release line they were read from (requirements.txt pins it)
and that its classes still set them, and fails with a message saying what to do if not:
a silent mismatch would hand a request the wrong token or cache in the middle of an answer.

`architecture_supported()` asks mlx-lm's own model-class look-up (`utils._get_classes`,
private) whether a folder's config names an architecture it can run, so a folder it cannot
load (a BERT-style embedding model, say) is refused before any weights are read.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import mlx.core as mx
import mlx_lm
from mlx_lm.generate import BatchGenerator, GenerationBatch, generation_stream
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache
from mlx_lm.sample_utils import apply_top_p, greedy_sampler
from mlx_lm.utils import _get_classes, load, load_tokenizer

__all__ = [
    "SUPPORTED_SERIES",
    "BatchGenerator",
    "MlxLmIncompatible",
    "apply_top_p",
    "architecture_supported",
    "can_trim_prompt_cache",
    "check_private_attributes",
    "check_version",
    "decoding_uids",
    "generation_stream",
    "greedy_sampler",
    "load",
    "load_tokenizer",
    "make_prompt_cache",
    "row_tokens_left",
    "row_unfed_logprobs",
    "row_unfed_token",
    "trim_prompt_cache",
]

# The release line whose private attributes this module reads (requirements.txt: 0.32.2).
SUPPORTED_SERIES = "0.32"

# (class, the attributes its __init__ must set) that the accessors below read.
_PRIVATE_ATTRIBUTES: tuple[tuple[type, tuple[str, ...]], ...] = (
    (BatchGenerator, ("_generation_batch",)),
    (GenerationBatch, ("_next_tokens", "_next_logprobs", "_num_tokens", "uids", "max_tokens")),
)


class MlxLmIncompatible(ImportError):
    """The installed mlx-lm is not one mlx_server's batch hand-over was written against."""


def check_version(version: str) -> None:
    """Refuse any mlx-lm outside the supported release line."""
    if version != SUPPORTED_SERIES and not version.startswith(SUPPORTED_SERIES + "."):
        raise MlxLmIncompatible(
            f"mlx_server needs mlx-lm {SUPPORTED_SERIES}.x, found {version}: it reads private "
            "attributes of mlx-lm's BatchGenerator (mlx_server/compat_mlx_lm.py). Install the "
            "version pinned in requirements.txt, or check those attributes against the new "
            "release and update SUPPORTED_SERIES."
        )


def check_private_attributes(
    expected: tuple[tuple[type, tuple[str, ...]], ...] = _PRIVATE_ATTRIBUTES,
) -> None:
    """Refuse an mlx-lm whose classes no longer set the attributes read below."""
    for cls, names in expected:
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError) as exc:
            raise MlxLmIncompatible(
                f"cannot read the source of mlx-lm's {cls.__name__} to check it: {exc}"
            ) from exc
        missing = [
            name
            for name in names
            if not re.search(rf"self\.{name}\s*(:[^=\n]*)?=[^=]", source)  # set, maybe typed
        ]
        if missing:
            raise MlxLmIncompatible(
                f"mlx-lm {mlx_lm.__version__}'s {cls.__name__} no longer sets "
                f"{', '.join(missing)}, which mlx_server/compat_mlx_lm.py reads; "
                "install the mlx-lm pinned in requirements.txt."
            )


check_version(mlx_lm.__version__)
check_private_attributes()


# --- the accessors: the only reads of mlx-lm's private state ---


def decoding_uids(generator: BatchGenerator) -> list[int]:
    """The uids of the rows decoding now (not those queued or prefilling)."""
    return list(generator._generation_batch.uids)


def row_unfed_token(generator: BatchGenerator, uid: int) -> mx.array:
    """The token the batch's last step sampled for this row: neither fed nor reported yet."""
    rows: Any = generator._generation_batch
    i = rows.uids.index(uid)
    token: mx.array = rows._next_tokens[i : i + 1]
    return token


def row_unfed_logprobs(generator: BatchGenerator, uid: int) -> mx.array:
    """The log-probabilities the row's unfed token was sampled from (logprobs.py)."""
    rows: Any = generator._generation_batch
    logprobs: mx.array = rows._next_logprobs[rows.uids.index(uid)]
    return logprobs


def row_tokens_left(generator: BatchGenerator, uid: int) -> int:
    """How many more tokens this row may produce."""
    rows: Any = generator._generation_batch
    i = rows.uids.index(uid)
    return int(rows.max_tokens[i] - rows._num_tokens[i])


def architecture_supported(config: dict[str, Any]) -> bool:
    """Whether mlx-lm has a model class for this config.json (its model_type/architectures)."""
    if not isinstance(config.get("model_type"), str):
        return False
    try:
        _get_classes(config)
    except (ValueError, ImportError, KeyError, TypeError):
        return False
    return True
