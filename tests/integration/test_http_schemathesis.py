"""schemathesis against the served OpenAPI document, authenticated, on SQLite and PostgreSQL.

A real uvicorn serves the API; schemathesis loads ``/openapi.json`` from it and generates requests for every
operation (as the front desk's and as the prescriber's API key; half of them aimed at a real case), and each
answer must not be a 5xx and must conform to the document: declared status, content type, headers, schema.
Driven from one test per database with hypothesis directly (``schemathesis.pytest.from_fixture`` crashes on
pytest 9.2); derandomized and bounded, so it is stable in CI.
"""

from __future__ import annotations

import traceback
import warnings
from typing import Any

import pytest
from http_server import serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FRONT_DESK, INQUIRY

from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.store.sql import SqlStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import schemathesis
    from schemathesis import Case
    from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MAX_EXAMPLES = 15
ROLES = ("front_desk", "prescriber")


def _failures_of(operation: Any, base_url: str, auth: dict[str, str], case_ids: list[str], *,
                 checks: Any = None, excluded: Any = None) -> list[str]:
    """Run the operation's generated cases; each failure (after hypothesis shrinks it) as text."""
    failures: list[str] = []

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(case=operation.as_strategy(), real=st.sampled_from([None, *case_ids]))
    def run(case: Case[Any], real: str | None) -> None:
        if real is not None and "case_id" in (case.path_parameters or {}):
            case.path_parameters = {**(case.path_parameters or {}), "case_id": real}
        response = case.call(base_url=base_url, headers=auth)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
        case.validate_response(response, headers=auth, checks=checks, excluded_checks=excluded)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # every failure is collected and reported below
        failures.append(f"{operation.label}: " + "".join(traceback.format_exception_only(exc))[-3000:])
    return failures


def _run(url: str, roles: tuple[str, ...] = ROLES, **check_options: Any) -> list[str]:
    engine = build_engine(url, settings=Settings())
    keys = {role: engine.create_api_key(f"pms-{role}", role, created_by="test-admin")[0] for role in ROLES}
    case_ids = [engine.open_case(INQUIRY, actor=FRONT_DESK).case_id for _ in range(2)]
    failures: list[str] = []
    try:
        with serving(create_app(engine, RequestAuthenticator(engine), ready=lambda: None)) as base_url:
            schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
            operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
            assert len(operations) >= 10
            for role in roles:
                auth = {"Authorization": f"Bearer {keys[role]}"}
                for operation in operations:
                    failures += [f"[{role}] {f}"
                                 for f in _failures_of(operation, base_url, auth, case_ids, **check_options)]
    finally:
        engine.close()
    return failures


def test_no_5xx_and_every_answer_conforms_to_the_openapi_document(
    any_ready_url: str, request: pytest.FixtureRequest
) -> None:
    """Every check schemathesis runs by default (no 5xx; declared status, content type, headers and schema;
    negative data rejected; auth not ignored; ...) but the acceptance of schema-valid data, tested below."""
    # The answers' shapes do not depend on the database: on PostgreSQL one role is enough to catch a 5xx there.
    roles = ROLES if any_ready_url.startswith("sqlite") else ROLES[:1]
    failures = _run(any_ready_url, roles, excluded=[positive_data_acceptance])
    assert not failures, "\n\n".join(failures)


@pytest.mark.xfail(strict=True, reason="the OpenAPI document under-declares what the API validates: path ids "
                   "(case_id, appointment id) have no pattern, Kapflow-On-Behalf-Of no format, the intake and fact "
                   "bodies no fields, so schema-valid requests get 422 (kapflow/http/common.py, cases.py)")
def test_every_schema_valid_request_is_accepted(db_url: str) -> None:
    SqlStore(db_url).close()  # the schema, as any_ready_url makes it: on SQLite only (an xfail's cost is its own)
    failures = _run(db_url, checks=[positive_data_acceptance])
    assert not failures, "\n\n".join(failures)
