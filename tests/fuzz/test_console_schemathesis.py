"""Fuzzing the console's API routes with schemathesis against the live app (uvicorn on 127.0.0.1,
real SQLite camera table, alert reviews and outbox), authenticated with the token, in the positive,
negative and stateful phases (see ``tests/fuzz/schemathesis_phases.py``): no 5xx, every response as
the schema documents it, every request that breaks the schema refused with a documented 4xx. The push
channel, the live view and search are off here (they answer 404), so no request opens an endless
stream; their behaviour is tested with a running agent in tests/agent/console."""

from __future__ import annotations

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
from agent.cameras import CameraStore
from agent.console.reviews import ReviewStore
from agent.console.services import ConsoleServices
from agent.console.session import SessionStore
from agent.queries import QueryRegistry
from tests.fuzz.schemathesis_phases import check_operation, configured, run_stateful, with_input

TOKEN = "fuzz-console-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# schemathesis checks each operation with a missing and a wrong token too (hundreds in a run, from
# 127.0.0.1); with the default lockout it would soon get 429 for everything, and fuzz nothing.
NEVER_LOCKED_OUT = AuthLockoutConfig(max_failures=100_000)
EXAMPLES_PER_OPERATION = 25
NEGATIVE_EXAMPLES_PER_OPERATION = 20
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8
CONSOLE_PATHS = ("/session", "/events", "/cameras", "/alerts/{alert_id}", "/search", "/queries/try")


@dataclass
class LiveConsole:
    server: ApiServer
    registry: QueryRegistry
    cameras: CameraStore

    def reset(self) -> None:
        """Back to no cameras and no queries: each stateful scenario starts from the same state."""
        for camera in self.cameras.list_cameras():
            self.cameras.remove(camera.id)
        for query in self.registry.list_queries():
            self.registry.remove(query.id)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveConsole]:
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
    yield LiveConsole(server, registry, cameras)
    server.stop()
    assert lockout.lockouts == 0, "the fuzzer was locked out: its requests were answered 429 unread"
    reviews.close()
    cameras.close()
    alerts.close()
    registry.close()


def _offline_context() -> ApiContext:
    """Enough of a context to render the schema at collection time (no server, no files)."""
    console = ConsoleServices(sessions=SessionStore(TOKEN), pages=True)
    return ApiContext(registry=None, token=TOKEN, health=dict, metrics=str, console=console)  # type: ignore[arg-type]


SCHEMA = configured(schemathesis.openapi.from_dict(create_app(_offline_context()).openapi()))
_RESULTS = list(SCHEMA.get_all_operations())
OPERATIONS = [
    result.ok()
    for result in _RESULTS
    if isinstance(result, Ok) and result.ok().path.startswith(CONSOLE_PATHS)
]
assert len(OPERATIONS) >= 15, [op.label for op in OPERATIONS]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_console_routes_answer_every_generated_request_without_5xx_and_as_documented(
    operation: schemathesis.APIOperation, live_api: LiveConsole
) -> None:
    check_operation(operation, live_api.server.url, AUTH, GenerationMode.POSITIVE, EXAMPLES_PER_OPERATION)


@pytest.mark.parametrize("operation", with_input(OPERATIONS), ids=lambda op: op.label)
def test_console_routes_refuse_every_request_that_breaks_the_schema_with_a_documented_4xx(
    operation: schemathesis.APIOperation, live_api: LiveConsole
) -> None:
    check_operation(
        operation, live_api.server.url, AUTH, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES_PER_OPERATION
    )


def test_console_call_chains_answer_as_documented(live_api: LiveConsole) -> None:
    calls = run_stateful(
        SCHEMA, live_api.server.url, AUTH, live_api.reset, STATEFUL_SCENARIOS, STATEFUL_STEPS
    )
    # The links from an added camera's id were followed, not only first calls.
    assert calls.get("POST /cameras", 0) > 0, calls
    followed = sum(calls.get(f"{method} /cameras/{{camera_id}}", 0) for method in ("GET", "PATCH", "DELETE"))
    assert followed > 0, calls


def test_schema_says_what_the_server_refuses_and_what_it_sends() -> None:
    spec = create_app(_offline_context()).openapi()
    paths, components = spec["paths"], spec["components"]["schemas"]
    # Every operation with a body documents the 400 for a body that is not UTF-8 JSON.
    with_body = [(p, m) for p, ops in paths.items() for m, op in ops.items() if "requestBody" in op]
    assert len(with_body) == 9 and all("400" in paths[p][m]["responses"] for p, m in with_body)
    # What the server refuses, the schema refuses: an empty query text, a camera without id or uri.
    assert components["QueryIn"]["properties"]["text"]["minLength"] == 1
    assert components["QueryPatch"]["properties"]["text"]["anyOf"][0]["minLength"] == 1
    camera_body = paths["/cameras"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(components[camera_body["$ref"].rsplit("/", 1)[1]]["required"]) == {"id", "uri"}
    # Pictures are documented as pictures, not JSON; created items carry the id that finds them again.
    for path in ("/cameras/{camera_id}/live.jpg", "/search/thumbnails/{key}.jpg"):
        assert list(paths[path]["get"]["responses"]["200"]["content"]) == ["image/jpeg"], path
    for path, model in (("/queries", "QueryOut"), ("/cameras", "CameraOut")):
        created = paths[path]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
        assert created == {"$ref": f"#/components/schemas/{model}"} and "id" in components[model]["required"]
