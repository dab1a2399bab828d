"""scripts/make_tiny_model.py: loadable, deterministic, idempotent."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO_ROOT

SCRIPT = [sys.executable, "scripts/make_tiny_model.py"]


def digest(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def test_it_builds_the_same_model_every_time(tmp_path: Path, tiny_model_path: Path) -> None:
    out = tmp_path / "again"
    subprocess.run([*SCRIPT, "--out", str(out)], cwd=REPO_ROOT, check=True, capture_output=True)
    assert digest(out) == digest(tiny_model_path)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        digest(out)
    )


def test_it_skips_a_model_that_is_already_there(tmp_path: Path) -> None:
    out = tmp_path / "m"
    subprocess.run([*SCRIPT, "--out", str(out)], cwd=REPO_ROOT, check=True, capture_output=True)
    weights = out / "model.safetensors"
    first = weights.stat().st_mtime_ns
    subprocess.run([*SCRIPT, "--out", str(out)], cwd=REPO_ROOT, check=True, capture_output=True)
    assert weights.stat().st_mtime_ns == first
    subprocess.run(
        [*SCRIPT, "--out", str(out), "--force"], cwd=REPO_ROOT, check=True, capture_output=True
    )
    assert weights.stat().st_mtime_ns != first


def test_it_makes_a_model_mlx_lm_can_load_with_a_chat_template(tiny_model_path: Path) -> None:
    code = (
        "import sys; from mlx_lm.utils import load; m, t = load(sys.argv[1]);"
        "print(t.eos_token_ids, t.apply_chat_template([{'role':'user','content':'x'}],"
        " add_generation_prompt=True, tokenize=False))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "<|assistant|>" in result.stdout


def test_it_rebuilds_a_model_made_with_an_older_template(tmp_path: Path) -> None:
    out = tmp_path / "m"
    subprocess.run([*SCRIPT, "--out", str(out)], cwd=REPO_ROOT, check=True, capture_output=True)
    config_path = out / "tokenizer_config.json"
    current = config_path.read_text()
    config = json.loads(current)
    config["chat_template"] = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    config_path.write_text(json.dumps(config))
    subprocess.run([*SCRIPT, "--out", str(out)], cwd=REPO_ROOT, check=True, capture_output=True)
    assert config_path.read_text() == current
