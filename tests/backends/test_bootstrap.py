"""`manage.py bootstrap`: what `make run` does to a fresh install, and nothing twice."""

import re
import stat
from io import StringIO
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import override_settings

from backends.models import LLMBackend, ServiceKey


def bootstrap() -> str:
    out = StringIO()
    call_command("bootstrap", stdout=out)
    return out.getvalue()


def test_it_prepares_a_fresh_install_once(db: None, tmp_path: Path, api: Any) -> None:
    with override_settings(VAR_DIR=tmp_path):
        first = bootstrap()
        second = bootstrap()
    password = re.search(r"admin / (\S+)", first).group(1)  # type: ignore[union-attr]
    assert User.objects.get(username="admin").check_password(password)
    assert "admin /" not in second, "the password is printed once"

    key_file = tmp_path / "service.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert ServiceKey.objects.count() == 1
    assert api.get("/api/route/tiny", HTTP_X_API_KEY=key_file.read_text()).status_code == 200

    demo = LLMBackend.objects.get()
    assert (demo.model_name, demo.backend_type, demo.upstream_model) == (
        "tiny",
        "mlx",
        "tiny-llama",
    )
    assert demo.max_tokens == 256


def test_it_leaves_an_existing_registry_and_admin_alone(
    db: None, tmp_path: Path, superuser: Any, make_entry: Any
) -> None:
    make_entry("phi3:mini")
    with override_settings(VAR_DIR=tmp_path):
        output = bootstrap()
    assert "admin /" not in output
    assert list(LLMBackend.objects.values_list("model_name", flat=True)) == ["phi3:mini"]


def test_a_second_run_names_the_existing_admin_and_how_to_reset_its_password(
    db: None, tmp_path: Path
) -> None:
    with override_settings(VAR_DIR=tmp_path):
        bootstrap()
        second = bootstrap()
    assert "Admin user already exists: admin" in second
    assert ".venv/bin/python manage.py changepassword admin" in second
