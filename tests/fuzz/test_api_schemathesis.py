"""API fuzzing with schemathesis against the live app (uvicorn on 127.0.0.1, real SQLite registry
and alert outbox), authenticated with its token, in its positive, negative and stateful phases (see
``tests/fuzz/schemathesis_phases.py``): no 5xx, every response as the schema documents it, and every
request that breaks the schema refused with a documented 4xx."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from agent.alerts.config import AlertsConfig
from agent.alerts.manager import AlertManager
from agent.api.app import ApiContext, create_app
from agent.api.lockout import AuthLockout, AuthLockoutConfig
from agent.api.server import ApiServer
from agent.queries import QueryRegistry
from tests.fuzz.schemathesis_phases import check_operation, configured, run_stateful, with_input

TOKEN = "fuzz-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# schemathesis checks each operation with a missing and a wrong token too (hundreds in a run, from
# 127.0.0.1); with the default lockout it would soon get 429 for everything, and fuzz nothing.
NEVER_LOCKED_OUT = AuthLockoutConfig(max_failures=100_000)
EXAMPLES_PER_OPERATION = 40
NEGATIVE_EXAMPLES_PER_OPERATION = 25
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8


@dataclass
class LiveApi:
    server: ApiServer
    registry: QueryRegistry

    def reset(self) -> None:
        """Back to no queries: each stateful scenario starts from the same state."""
        for query in self.registry.list_queries():
            self.registry.remove(query.id)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
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
    yield LiveApi(server, registry)
    server.stop()
    assert lockout.lockouts == 0, "the fuzzer was locked out: its requests were answered 429 unread"
    alerts.close()
    registry.close()


def _offline_context() -> ApiContext:
    """Enough of a context to render the schema at collection time (no server, no files)."""
    return ApiContext(registry=None, token=TOKEN, health=dict, metrics=str)  # type: ignore[arg-type]


# The schema the server serves, loaded once at collection so that each operation is its own test.
SCHEMA = configured(schemathesis.openapi.from_dict(create_app(_offline_context()).openapi()))
_RESULTS = list(SCHEMA.get_all_operations())
OPERATIONS = [result.ok() for result in _RESULTS if isinstance(result, Ok)]
assert len(OPERATIONS) == len(_RESULTS), "the served schema has operations schemathesis cannot read"


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_api_answers_every_generated_request_without_5xx_and_as_documented(
    operation: schemathesis.APIOperation, live_api: LiveApi
) -> None:
    check_operation(operation, live_api.server.url, AUTH, GenerationMode.POSITIVE, EXAMPLES_PER_OPERATION)


@pytest.mark.parametrize("operation", with_input(OPERATIONS), ids=lambda op: op.label)
def test_api_refuses_every_request_that_breaks_the_schema_with_a_documented_4xx(
    operation: schemathesis.APIOperation, live_api: LiveApi
) -> None:
    check_operation(
        operation, live_api.server.url, AUTH, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES_PER_OPERATION
    )


def test_api_call_chains_answer_as_documented(live_api: LiveApi) -> None:
    calls = run_stateful(
        SCHEMA, live_api.server.url, AUTH, live_api.reset, STATEFUL_SCENARIOS, STATEFUL_STEPS
    )
    # The links from a created query's id were followed, not only first calls.
    assert calls.get("POST /queries", 0) > 0, calls
    followed = sum(calls.get(f"{method} /queries/{{query_id}}", 0) for method in ("GET", "PATCH", "DELETE"))
    assert followed > 0, calls


def test_schema_is_served_only_with_the_token(live_api: LiveApi) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{live_api.server.url}/openapi.json", timeout=10)
    assert refused.value.code == 401
