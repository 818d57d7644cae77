"""API fuzzing with schemathesis against the live app (uvicorn on 127.0.0.1, real SQLite registry
and alert outbox), authenticated with its token: no 5xx, and every response matches the schema."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from agent.alerts.config import AlertsConfig
from agent.alerts.manager import AlertManager
from agent.api.app import ApiContext, create_app
from agent.api.lockout import AuthLockout, AuthLockoutConfig
from agent.api.server import ApiServer
from agent.queries import QueryRegistry

TOKEN = "fuzz-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# schemathesis checks each operation with a missing and a wrong token too (hundreds in a run, from
# 127.0.0.1); with the default lockout it would soon get 429 for everything, and fuzz nothing.
NEVER_LOCKED_OUT = AuthLockoutConfig(max_failures=100_000)
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("fuzz-api")
    alerts = AlertManager(
        AlertsConfig(database=root / "alerts.db", evidence_dir=root / "evidence"), "fuzz", sinks=[]
    )
    alerts.start()
    registry = QueryRegistry(root / "queries.db")
    lockout = AuthLockout(NEVER_LOCKED_OUT)
    context = ApiContext(
        registry=registry,
        token=TOKEN,
        health=alerts.health,
        metrics=lambda: "# HELP watchword_up x\n# TYPE watchword_up gauge\nwatchword_up 1\n",
        alerts=alerts,
        evidence_dir=root / "evidence",
        cameras=lambda: {"gate", "dock-1"},
        auth_lockout=lockout,
    )
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()
    assert lockout.lockouts == 0, "the fuzzer was locked out: its requests were answered 429 unread"
    alerts.close()
    registry.close()


def _offline_context() -> ApiContext:
    """Enough of a context to render the schema at collection time (no server, no files)."""
    return ApiContext(registry=None, token=TOKEN, health=dict, metrics=str)  # type: ignore[arg-type]


# The schema the server serves, loaded once at collection so that each operation is its own test.
SCHEMA = schemathesis.openapi.from_dict(create_app(_offline_context()).openapi())
_RESULTS = list(SCHEMA.get_all_operations())
OPERATIONS = [result.ok() for result in _RESULTS if isinstance(result, Ok)]
assert len(OPERATIONS) == len(_RESULTS), "the served schema has operations schemathesis cannot read"


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_api_answers_every_generated_request_without_5xx_and_as_documented(
    operation: schemathesis.APIOperation, live_api: ApiServer
) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        # Excluded: "schema-valid data must be accepted". The schema cannot say that a query text is
        # trimmed and refuses control characters, nor which camera ids the site has; those 422s are
        # intended. Every other check runs (no 5xx, documented status codes, response schemas).
        case.call_and_validate(
            base_url=live_api.url, headers=AUTH, excluded_checks=[positive_data_acceptance]
        )

    check()


def test_schema_is_served_only_with_the_token(live_api: ApiServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{live_api.url}/openapi.json", timeout=10)
    assert refused.value.code == 401
