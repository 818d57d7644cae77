"""Finding 7: the budget counts every HTTP request, retries included, against a real failing server."""

from __future__ import annotations

import time
from typing import Any

from chat_server import FakeChatServer
from rerank_fakes import make_candidate

from agent.decision.verifier import LmmWorker
from agent.rerank.config import RerankConfig
from agent.rerank.service import RerankService
from agent.types import Candidate


def test_retries_against_a_failing_server_take_budget_tokens() -> None:
    """30 requests a minute (one per 2 s, burst 2), max_retries 2, a server that always answers 500.

    Before the fix a candidate took one token and made three requests: about 12 requests in 6 s.
    """
    server = FakeChatServer()
    server.script = ["500"]
    config = RerankConfig.model_validate(
        {
            "enabled": True,
            "calls_per_minute": 30,
            "deadline_s": 600,
            "backend": {
                "type": "openai",
                "base_url": server.base_url,
                "model": "m",
                "max_retries": 2,
                "retry_backoff_s": 0.0,
                "timeout_s": 5,
            },
        }
    )
    service = RerankService.from_config(config)
    worker = LmmWorker(service)  # the LMM's own thread, as the decision core hands it batches
    waiting = [make_candidate(query_id=query) for query in range(20)]
    passed_on: list[Candidate] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < 6.0 and waiting:  # six seconds of a busy queue
            if worker.capacity() > 0:
                worker.submit([waiting.pop(0)], [0.0])
            worker.wait_idle(0.05)
            passed_on += [d.candidate for d in worker.collect()]
    finally:
        worker.close(timeout_s=5.0)
        passed_on += [d.candidate for d in worker.collect()]
        server.close()
    elapsed = time.monotonic() - started
    times = list(server.times)
    assert len(times) >= 3  # it did try, and retried
    # the bucket: at most 2 at once, then one every 2 s, counted over what the server received
    for index, at in enumerate(times):
        assert index + 1 <= 2 + (at - started) / 2.0 + 0.05, (index, at - started)
    assert len(times) <= 2 + elapsed / 2.0 + 1
    stats = service.stats()
    assert stats.calls == len(times)  # the service counted every request the server saw
    assert stats.calls_last_minute == len(times)
    # the candidates the server failed are passed on as unverified, reason error
    assert passed_on and stats.failed == len(passed_on)
    assert all(c.verification == "unverified" and c.verification_reason == "error" for c in passed_on)


def test_a_request_the_budget_cannot_allow_in_time_leaves_the_candidate_unverified_for_budget() -> None:
    """2 requests a minute: the cloze turn's retry spends the second, so the verdict turn cannot go.

    The server answers the cloze turn with UNKNOWN blanks, so nothing the LMM said is left: the
    candidate is unverified, reason budget, after waiting at most the deadline (1 s), not a minute.
    """
    server = FakeChatServer()
    server.script = ["500", "ok"]

    def respond(body: dict[str, Any]) -> str:
        users = [m for m in body["messages"] if m["role"] == "user"]
        return '{"blanks": {"1": "UNKNOWN"}}' if len(users) == 1 else '{"verdict": "yes"}'

    server.responder = respond
    config = RerankConfig.model_validate(
        {
            "enabled": True,
            "calls_per_minute": 2,
            "deadline_s": 1.0,
            "backend": {"type": "openai", "base_url": server.base_url, "model": "m", "retry_backoff_s": 0.0},
        }
    )
    service = RerankService.from_config(config)
    candidate = make_candidate()
    try:
        started = time.monotonic()
        [decision] = service.decide([candidate], [0.0])
        assert decision.candidate is candidate
        elapsed = time.monotonic() - started
    finally:
        service.close()
        server.close()
    assert len(server.bodies) == 2  # the cloze turn and its retry; the verdict turn never went out
    assert elapsed < 5.0
    assert candidate.verification == "unverified" and candidate.verification_reason == "budget"
    assert candidate.rationale is not None and candidate.rationale["error"].startswith("budget: ")
    assert service.stats().calls == 2
