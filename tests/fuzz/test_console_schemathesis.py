"""Fuzzing the console's API routes with schemathesis against the live app (uvicorn on 127.0.0.1,
real SQLite camera table, alert reviews and outbox), authenticated with the token: no 5xx, and
every response matches the schema. The push channel, the live view and search are off here (they
answer 404), so no request opens an endless stream; their behaviour is tested with a running
agent in tests/agent/console."""

from __future__ import annotations

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
from agent.cameras import CameraStore
from agent.console.reviews import ReviewStore
from agent.console.services import ConsoleServices
from agent.console.session import SessionStore
from agent.queries import QueryRegistry

TOKEN = "fuzz-console-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# schemathesis checks each operation with a missing and a wrong token too (hundreds in a run, from
# 127.0.0.1); with the default lockout it would soon get 429 for everything, and fuzz nothing.
NEVER_LOCKED_OUT = AuthLockoutConfig(max_failures=100_000)
EXAMPLES_PER_OPERATION = 25
CONSOLE_PATHS = ("/session", "/events", "/cameras", "/alerts/{alert_id}", "/search", "/queries/try")


def _console(root: object = None) -> ConsoleServices:
    return ConsoleServices(sessions=SessionStore(TOKEN), pages=True)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("fuzz-console")
    alerts = AlertManager(
        AlertsConfig(database=root / "alerts.db", evidence_dir=root / "evidence"), "fuzz", sinks=[]
    )
    alerts.start()
    registry = QueryRegistry(root / "state.db")
    cameras = CameraStore(root / "state.db")
    reviews = ReviewStore(root / "alerts.db", root / "evidence")
    console = ConsoleServices(sessions=SessionStore(TOKEN), reviews=reviews, cameras=cameras, pages=True)
    lockout = AuthLockout(NEVER_LOCKED_OUT)
    context = ApiContext(
        registry=registry,
        token=TOKEN,
        health=alerts.health,
        metrics=str,
        alerts=alerts,
        evidence_dir=root / "evidence",
        console=console,
        auth_lockout=lockout,
    )
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()
    assert lockout.lockouts == 0, "the fuzzer was locked out: its requests were answered 429 unread"
    reviews.close()
    cameras.close()
    alerts.close()
    registry.close()


def _offline_context() -> ApiContext:
    """Enough of a context to render the schema at collection time (no server, no files)."""
    return ApiContext(registry=None, token=TOKEN, health=dict, metrics=str, console=_console())  # type: ignore[arg-type]


SCHEMA = schemathesis.openapi.from_dict(create_app(_offline_context()).openapi())
_RESULTS = list(SCHEMA.get_all_operations())
OPERATIONS = [
    result.ok()
    for result in _RESULTS
    if isinstance(result, Ok) and result.ok().path.startswith(CONSOLE_PATHS)
]
assert len(OPERATIONS) >= 15, [op.label for op in OPERATIONS]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_console_routes_answer_every_generated_request_without_5xx_and_as_documented(
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
        # As in the API's own fuzzing: schema-valid data may still be refused (camera ids, URIs).
        case.call_and_validate(
            base_url=live_api.url, headers=AUTH, excluded_checks=[positive_data_acceptance]
        )

    check()
