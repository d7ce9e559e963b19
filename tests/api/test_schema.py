"""Property-based checks of the served OpenAPI schema (schemathesis) on loopback: whatever
the generated request, no 5xx, and every answer's status, media type and body conform to
the schema. Bounded: a few dozen examples per operation; random bytes are never a face, so
the model is rarely reached."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import running  # noqa: E402


@pytest.fixture(scope="module")
def served(api_pipeline, tmp_path_factory):
    from sam_age.api import Limits, build_server

    server = build_server(
        api_pipeline, Limits(max_upload_mb=1, max_queue=4), demo=False, workdir=tmp_path_factory.mktemp("schema")
    )
    with running(server) as url:
        yield url


def test_every_answer_conforms_and_none_is_a_server_error(served):
    # schemathesis's Python API with a plain Hypothesis loop per operation (its pytest
    # plugin does not load under this pytest).
    from hypothesis import given

    schema = schemathesis.openapi.from_url(served + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/age", "/v1/estimate", "/v1/health", "/v1/ready", "/metrics"}
    seen = {}
    for op in operations:

        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        @given(case=op.as_strategy())
        def check(case):
            response = case.call_and_validate(
                timeout=300,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )
            seen.setdefault(op.path, set()).add(response.status_code)

        check()
    assert seen["/v1/health"] == {200} and any(s >= 400 for s in seen["/v1/age"])
