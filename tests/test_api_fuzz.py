"""API fuzz run over the OpenAPI schema (issue 11): schemathesis generates requests for every
operation the schema declares — valid and invalid parameters and bodies — and sends them to the
running app over a real socket (pytest-django's live server) with a staff token. Every answer must
be below 500 and match the schema (status code, content type, body)."""

import pytest
import schemathesis
from django.contrib.auth.models import User
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_token(db):
    user = User.objects.create_superuser("fuzz-staff", "fuzz@example.com", "x" * 20)
    return Token.objects.create(user=user).key


def no_server_fault(ctx, response, case):
    """No 5xx, but for the documented 503 of a live read whose data is not there yet (a JSON body
    the schema declares: no metrics or rate before beat has run, `/health` naming what is down)."""
    if response.status_code == 503 and case.path in UNAVAILABLE_OK:
        return None
    return not_a_server_error(ctx, response, case)


UNAVAILABLE_OK = {"/health", "/metrics/live", "/pnl", "/equity/history"}
CHECKS = [no_server_fault, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_answers_below_500_and_as_its_schema_says(live_server, staff_token):
    headers = {"Authorization": f"Token {staff_token}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json", headers=headers)
    operations, failures = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case):
            response = case.call(headers=headers, timeout=20)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 — collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert len(operations) >= 20, operations
    assert not failures, "\n\n".join(failures)
