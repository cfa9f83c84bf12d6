"""The OpenAPI document integrators read (docs/openapi.json) is the one the service serves."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from app.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_the_checked_in_openapi_document_is_current() -> None:
    result = CliRunner().invoke(main, ["serve", "--openapi"])
    assert result.exit_code == 0, result.output
    served = json.loads(result.output[result.output.index("{") :])
    assert json.loads(DOC.read_text()) == served, (
        "regenerate it: .venv/bin/rekindle serve --openapi > docs/openapi.json"
    )
    paths = set(served["paths"])
    assert {"/v1/recommendations", "/v1/recommendations:batch", "/v1/segments/{segment}/recommendation"} <= paths
    assert {"APIKeyHeader", "HTTPBearer"} == set(served["components"]["securitySchemes"])
