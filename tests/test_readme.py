"""README's promises to a newcomer hold: two commands, runnable examples, true defaults."""

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _code_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_it_keeps_exactly_its_two_commands() -> None:
    block = _code_blocks()[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_every_manage_py_command_runs_in_the_venv() -> None:
    # `python manage.py` outside the venv fails on a fresh machine: Django is not installed.
    for match in re.finditer(r"(\S*)\s+manage\.py", README):
        assert match.group(1).endswith(".venv/bin/python"), match.group(0)


def test_the_api_example_works_with_the_token_the_readme_says_how_to_make(
    db: None, superuser: Any
) -> None:
    User.objects.filter(pk=superuser.pk).update(username="admin")
    block = next(b for b in _code_blocks() if "ADMIN_TOKEN=" in b)
    token_command = re.search(r"ADMIN_TOKEN=\$\(\.venv/bin/python manage\.py (.+)\)", block)
    assert token_command, block
    out = StringIO()
    call_command(*token_command.group(1).split(), stdout=out, stderr=StringIO())
    token = out.getvalue().strip()

    body = json.loads(re.search(r"-d '(\{.*?\})'", block, flags=re.S).group(1))  # type: ignore[union-attr]
    response = APIClient().post(
        "/api/llm-backends", body, format="json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 201, response.content
    assert response.json()["model_name"] == body["model_name"]


def test_the_broker_default_is_the_one_the_settings_table_names() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `REDIS_URL`"))
    assert "filesystem broker in `var/celery/`" in row
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "CELERY_BROKER_URL", "ATHENA_DEBUG"}
    }
    code = "from django.conf import settings; print(settings.CELERY_BROKER_URL)"
    env["DJANGO_SETTINGS_MODULE"] = "athena_admin.settings"
    printed = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert printed == "filesystem://"
