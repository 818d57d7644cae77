"""The schemathesis phases the fuzz tests run against a live server: positive and negative requests
per operation, and stateful scenarios that chain operations through the links schemathesis infers
from the response schemas (``POST /queries`` -> its ``id`` -> ``GET``/``PATCH``/``DELETE``).

Every check runs but "schema-valid data must be accepted": the schema cannot say that a query text
is trimmed and refuses control characters, nor which camera ids and URIs the site accepts; those
422s are intended. In the negative phase every request breaks the schema and must be refused with a
4xx the schema documents (``negative_data_rejection``), never answered with a 5xx or a 2xx.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXCLUDED: list[Any] = [positive_data_acceptance]


def configured(schema: Any) -> Any:
    """``schema`` set up for these tests: the token is sent by the tests (schemathesis generates no
    credentials of its own), and no made-up query parameter counts as breaking the schema (the API
    ignores parameters it does not know, as OpenAPI allows)."""
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    return schema


def with_input(operations: list[schemathesis.APIOperation]) -> list[schemathesis.APIOperation]:
    """The operations with parameters or a body: only those can be sent a request that breaks them."""
    return [op for op in operations if len(op.path_parameters) + len(op.query) + len(op.body) > 0]


def check_operation(
    operation: schemathesis.APIOperation,
    base_url: str,
    headers: dict[str, str],
    mode: GenerationMode,
    examples: int,
) -> None:
    """Send ``examples`` generated requests of ``mode`` to ``operation`` and run every check on each."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=EXCLUDED)

    check()


def run_stateful(
    schema: Any,
    base_url: str,
    headers: dict[str, str],
    reset: Callable[[], None],
    scenarios: int,
    steps: int,
) -> dict[str, int]:
    """Run ``scenarios`` stateful scenarios of up to ``steps`` calls each, each from the state
    ``reset`` makes (Hypothesis replays choices, and the same choices must meet the same answers);
    returns how many calls each operation got, so that a test can tell the links were followed."""
    calls: dict[str, int] = {}

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            reset()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": base_url, "headers": headers}

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            super().after_call(response, case)

        def validate_response(
            self, response: Any, case: schemathesis.Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=EXCLUDED,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Machine.run(
        settings=settings(
            # No replay or shrinking: a scenario reads the server's state, which earlier ones changed.
            phases=[Phase.generate],
            max_examples=scenarios,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
    )
    return calls
