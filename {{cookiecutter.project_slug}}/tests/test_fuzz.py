"""Property-based fuzzing of every operation in the service's own OpenAPI schema.

schemathesis generates valid and invalid requests from /openapi.json and checks
each response: never a 5xx, status code and body conform to the schema, and
schema-invalid requests are refused with a 4xx. Runs
against a real uvicorn server. Marked ``heavy`` (``make test`` runs it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from {{ cookiecutter.package_name }}.main import create_app

from .conftest import live_server, make_settings

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def api_schema(model_path: Path) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(make_settings(model_path, request_timeout_s=10))
    with live_server(app) as address:
        yield schemathesis.openapi.from_url(f"http://{address}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")
FUZZED: Counter[str] = Counter()  # cases per operation, printed at the end (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    counts = ", ".join(f"{operation} {count}" for operation, count in FUZZED.most_common())
    print(f"fuzzed requests per operation: {counts}")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # A schema-valid request may still be refused: a `file` that is bytes but not an
    # image is a 400 by design. Every other check (no 5xx, documented status codes,
    # response schemas, negative data rejected) applies.
    FUZZED[case.operation.label] += 1
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
