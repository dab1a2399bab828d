"""The API's OpenAPI document is valid, complete and served only to signed-in users."""

from typing import Any

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

OPENAPI_JSON = "application/vnd.oai.openapi+json"


def test_the_served_schema_is_a_valid_openapi_document(api_as: Any, viewer: Any) -> None:
    response = api_as(viewer).get("/api/schema", HTTP_ACCEPT=OPENAPI_JSON)
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    validate(document)  # raises OpenAPIValidationError with the failing path


def test_every_operation_documents_its_responses_and_security(api_as: Any, viewer: Any) -> None:
    document = api_as(viewer).get("/api/schema", HTTP_ACCEPT=OPENAPI_JSON).json()
    schemes = set(document["components"]["securitySchemes"])
    assert {"apiKeyBearer", "apiKeyHeader"} <= schemes
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], f"{method.upper()} {path} documents no response"
            assert operation.get("security"), f"{method.upper()} {path} documents no security"


def test_the_schema_is_not_public(db: None, api: Any) -> None:
    assert api.get("/api/schema").status_code in (401, 403)


@pytest.mark.django_db
def test_the_generated_schema_passes_spectacular_validation_without_warnings(tmp_path: Any) -> None:
    # The same check CI runs: `manage.py spectacular --validate --fail-on-warn`.
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    spec, _ = read_from_filename(str(target))
    validate(spec)
    assert yaml.safe_load(target.read_text())["info"]["title"] == "Athena API"
