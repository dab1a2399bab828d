"""Make a small random-weight llama model that mlx_lm.utils.load can open.

The model exists so tests and benchmarks can exercise the real MLX code path
(load, tokenize, chat template, batched decode) without downloading weights.
Its output is gibberish by design; what matters is that it is deterministic.

    python scripts/make_tiny_model.py                 # var/models/tiny-llama
    python scripts/make_tiny_model.py --size large    # var/models/bench-llama
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SEED = 1234

SPECIAL_TOKENS = ["<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# A thinking model's markers: mlx-lm finds them in the vocabulary (tokenizer_utils.py).
THINK_TOKENS = ["<think>", "</think>"]

# A Jinja chat template in the shape transformers renders; it adds <s> itself, so
# the server encodes the rendered text without adding special tokens again.
# Tool support in the Hermes/Qwen style that mlx-lm's `json_tools` parser reads: the tools
# are listed in a system turn, and a call is `<tool_call>{"name": ..., "arguments": {...}}
# </tool_call>` (mlx-lm infers the parser from "<tool_call>" and "tool_call.name" here).
# Without tools the rendering is the plain one, token for token.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}<|system|>\nYou may call these tools:\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}"
    'To call one, answer <tool_call>{"name": <name>, "arguments": <object>}</tool_call><|end|>\n'
    "{% endif %}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] or '' }}"
    "{% if message['tool_calls'] %}{% for tool_call in message['tool_calls'] %}"
    "{% if tool_call.function is defined %}{% set tool_call = tool_call.function %}{% endif %}"
    '<tool_call>{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}'
    "</tool_call>{% endfor %}{% endif %}"
    "<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# The thinking model's generation prompt opens the reasoning block (as DeepSeek-R1's and
# Qwen3-Thinking's do), and closes it at once when `enable_thinking` is false (Qwen3's switch).
THINKING_TEMPLATE = CHAT_TEMPLATE.replace(
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
    "{% if add_generation_prompt %}<|assistant|>\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}",
)

# Built-in training text for the byte-level BPE: plain ASCII prose, so merged
# tokens decode to readable fragments.
CORPUS = """
Athena routes each request to the backend that serves a model best. A route names a
target, a probe checks that the target answers, and a sample records how fast it was.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
Why is the sky blue? Sunlight scatters off the molecules of the air, and blue light
scatters more than red light because its wavelength is shorter. At sunset the light
crosses more air, so the blue is scattered away and the sky turns orange and red.
Once upon a time there was a small model that wanted to answer every question. It
read the prompt, it thought for a while, and it wrote one token after another until
it reached the end of its budget or found the word that told it to stop.
def add(a, b):
    return a + b
for i in range(10):
    print(i, add(i, i))
{"model": "tiny-llama", "prompt": "hello", "stream": false}
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000.
"""


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of one generated model."""

    folder: str
    hidden_size: int
    layers: int
    intermediate_size: int
    heads: int
    kv_heads: int
    vocab_size: int
    context: int
    thinking: bool = False


SHAPES = {
    # Small enough that a test run spends its time in the server, not in matmuls.
    "tiny": ModelShape("tiny-llama", 64, 2, 128, 4, 2, 512, 2048),
    # Wide and deep enough that one decode step costs several ms on a laptop CPU,
    # so per-token overhead in the server is measured against real work.
    "large": ModelShape("bench-llama", 384, 6, 1024, 6, 2, 1024, 4096),
    # The tiny model with reasoning markers and a template that thinks (thinking tests).
    "think": ModelShape("tiny-think", 64, 2, 128, 4, 2, 512, 2048, thinking=True),
}


def build_tokenizer(shape: ModelShape, out: Path) -> int:
    """Train a byte-level BPE on the built-in corpus and write tokenizer files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=shape.vocab_size,
        special_tokens=SPECIAL_TOKENS + (THINK_TOKENS if shape.thinking else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    # Prepend <s> like llama tokenizers do when add_special_tokens is true.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    tokenizer.save(str(out / "tokenizer.json"))

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": None,
        "pad_token": "</s>",
        "model_max_length": shape.context,
        "clean_up_tokenization_spaces": False,
        "chat_template": THINKING_TEMPLATE if shape.thinking else CHAT_TEMPLATE,
        # mlx-lm's tool-call parser for the template's call format (mlx_lm/tool_parsers).
        "tool_parser_type": "json_tools",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>"}, indent=2)
    )
    return tokenizer.get_vocab_size()


def build_weights(
    shape: ModelShape,
    printable: list[bool],
    eos_id: int,
    bos_id: int,
    out: Path,
    think_end: tuple[int, int] | None = None,
) -> None:
    """Initialise a llama with a fixed seed and save config.json and safetensors."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    vocab_size = len(printable)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.layers,
        "intermediate_size": shape.intermediate_size,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "max_position_embeddings": shape.context,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }
    mx.random.seed(SEED)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    # Zero the output rows of tokens that do not decode to printable ASCII (raw
    # high bytes, control bytes, specials): their logit is then 0 while the others
    # spread around it, so greedy text stays readable instead of a run of U+FFFD.
    head = weights["lm_head.weight"] * 8.0
    keep = mx.array([[1.0] if printable[i] else [0.0] for i in range(vocab_size)])
    weights["lm_head.weight"] = head * keep
    if think_end is not None:
        # The thinking model's `</think>` gets the output row of a token the model writes
        # often, so that a sampled answer leaves its reasoning now and then (a zero row
        # would almost never be sampled, and every answer would be reasoning only).
        marker, often = think_end
        weights["lm_head.weight"][marker] = weights["lm_head.weight"][often]
    mx.eval(weights)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))


def _is_printable(tokenizer: object, token_id: int) -> bool:
    """Tell whether a token decodes on its own to printable ASCII."""
    if tokenizer.id_to_token(token_id) in SPECIAL_TOKENS + THINK_TOKENS:  # type: ignore[attr-defined]
        return False
    text = tokenizer.decode([token_id])  # type: ignore[attr-defined]
    return bool(text) and all(32 <= ord(c) < 127 or c == "\n" for c in text)


def _is_current(out: Path, shape: ModelShape) -> bool:
    """Tell whether `out` holds a complete model made by this version of the script.

    The chat template is what changes between versions (tool support was added): a folder
    with an older one is rebuilt, so a checkout never tests against a stale model.
    """
    config = out / "tokenizer_config.json"
    if not ((out / "model.safetensors").exists() and (out / "tokenizer.json").exists()):
        return False
    if not config.exists():
        return False
    expected = THINKING_TEMPLATE if shape.thinking else CHAT_TEMPLATE
    return bool(json.loads(config.read_text()).get("chat_template") == expected)


def make_model(size: str, out: Path | None = None, force: bool = False) -> Path:
    """Create the model folder for a size unless it already exists; return its path."""
    shape = SHAPES[size]
    out = out or REPO_ROOT / "var" / "models" / shape.folder
    if _is_current(out, shape) and not force:
        return out
    # Build in a sibling folder and rename, so a crash never leaves a half model
    # that a later idempotent run would take as complete.
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab_size = build_tokenizer(shape, tmp)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp / "tokenizer.json"))
    printable = [_is_printable(tok, i) for i in range(vocab_size)]
    eos, bos = tok.token_to_id("</s>"), tok.token_to_id("<s>")
    assert eos is not None and bos is not None  # both are trained special tokens
    think_end = None
    if shape.thinking:
        marker, often = tok.token_to_id("</think>"), tok.token_to_id("esti")
        assert marker is not None and often is not None  # trained tokens
        think_end = (marker, often)
    build_weights(shape, printable, eos, bos, tmp, think_end)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and make the model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--size", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    path = make_model(args.size, args.out, args.force)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
