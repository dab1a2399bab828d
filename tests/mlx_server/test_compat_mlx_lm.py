"""mlx-lm's private attributes are read in one module, which checks them at import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_server import compat_mlx_lm
from mlx_server.compat_mlx_lm import MlxLmIncompatible, check_private_attributes, check_version

from .conftest import REPO_ROOT


def test_the_installed_mlx_lm_passes_the_checks() -> None:
    import mlx_lm

    check_version(mlx_lm.__version__)
    check_private_attributes()
    assert mlx_lm.__version__.startswith(compat_mlx_lm.SUPPORTED_SERIES + ".")


def test_the_pin_and_the_supported_series_agree() -> None:
    pins = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    (pin,) = [line for line in pins if line.startswith("mlx-lm==")]
    check_version(pin.removeprefix("mlx-lm==").split(";")[0].strip())


@pytest.mark.parametrize("version", ["0.31.9", "0.33.0", "1.0.0", "0.320.1", "0.3"])
def test_another_release_line_is_refused_with_what_to_do(version: str) -> None:
    with pytest.raises(MlxLmIncompatible, match=f"needs mlx-lm 0.32.x, found {version}"):
        check_version(version)


def test_a_class_that_no_longer_sets_an_attribute_is_refused() -> None:
    # The shape of a future GenerationBatch that renamed what we read: a stand-in class,
    # since no installed release shows it.
    class GenerationBatch:
        def __init__(self) -> None:
            self.uids: list[int] = []
            self._pending_tokens = None

    with pytest.raises(MlxLmIncompatible, match="no longer sets _next_tokens"):
        check_private_attributes(((GenerationBatch, ("uids", "_next_tokens")),))


def test_a_mismatched_mlx_lm_stops_the_server_at_import_with_a_message() -> None:
    # A real interpreter with mlx-lm reporting another version: importing the server fails.
    code = "import mlx_lm; mlx_lm.__version__ = '0.40.0'; import mlx_server"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "MlxLmIncompatible: mlx_server needs mlx-lm 0.32.x, found 0.40.0" in result.stderr


def test_no_other_module_of_the_server_imports_mlx_lm() -> None:
    offenders = []
    for path in sorted(Path(REPO_ROOT / "mlx_server").glob("*.py")):
        if path.name == "compat_mlx_lm.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "mlx_lm"]
    assert offenders == []
