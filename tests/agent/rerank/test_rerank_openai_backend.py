"""The OpenAI-compatible backend against a local chat-completions server (a test double, on 127.0.0.1)."""

from __future__ import annotations

import base64
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from chat_server import FakeChatServer

from agent.rerank.backends.base import LmmError, LmmRequest, build_backend
from agent.rerank.backends.openai_backend import OpenAIBackend
from agent.rerank.config import OpenAIBackendConfig, RerankConfig
from agent.rerank.reranker import Reranker, RerankItem


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    fake = FakeChatServer()
    yield fake
    fake.close()


def _backend(server: FakeChatServer, **overrides: Any) -> OpenAIBackend:
    settings: dict[str, Any] = {
        "type": "openai",
        "base_url": server.base_url + "/",
        "model": "qwen2.5-vl",
        "timeout_s": 2.0,
        "max_retries": 2,
        "retry_backoff_s": 0.0,
    }
    config = OpenAIBackendConfig.model_validate({**settings, **overrides})
    backend = build_backend(config)
    assert isinstance(backend, OpenAIBackend)
    return backend


def _image() -> np.ndarray:
    image = np.zeros((40, 30, 3), np.uint8)
    image[:, :, 2] = 255
    return image


def test_request_shape_and_response(server: FakeChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LMM_KEY", "sekret")
    backend = _backend(server, api_key_env="TEST_LMM_KEY")
    [response] = backend.generate([LmmRequest("fill the blanks", (_image(),), system="be careful")])

    body = server.bodies[0]
    assert body["model"] == "qwen2.5-vl" and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": "be careful"}
    image_part, text_part = body["messages"][1]["content"]
    assert text_part == {"type": "text", "text": "fill the blanks"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert (
        decoded is not None and decoded.shape == (40, 30, 3) and decoded[:, :, 2].mean() > 240
    )  # still red, BGR kept
    assert server.headers[0]["Authorization"] == "Bearer sekret"

    assert response.text == server.content
    assert [t.text for t in response.tokens][3] == "yes"
    assert response.tokens[3].top_logprobs == {"yes": pytest.approx(math.log(0.75)), "no": math.log(0.25)}


def test_reranker_takes_the_verdict_from_logprobs(server: FakeChatServer) -> None:
    reranker = Reranker(RerankConfig(), _backend(server))
    [outcome] = reranker.rerank_items([RerankItem("a man in a red jacket falls", 0.5, (_image(),))])
    assert outcome.verdict_source == "logprobs" and outcome.verdict_probability == pytest.approx(0.75)
    answers = {b["masked"]: b["answer"] for b in outcome.rationale["blanks"]}
    assert answers == {"man": "man", "red": "UNKNOWN", "jacket": "UNKNOWN", "falls": "falling"}


def test_5xx_and_429_are_retried(server: FakeChatServer) -> None:
    server.script = ["500", "429", "ok"]
    [response] = _backend(server).generate([LmmRequest("hi")])
    assert response.text == server.content and len(server.bodies) == 3


def test_gives_up_after_max_retries(server: FakeChatServer) -> None:
    server.script = ["500"]
    with pytest.raises(LmmError, match=r"HTTP 500.*after 3 attempts"):
        _backend(server).generate([LmmRequest("hi")])
    assert len(server.bodies) == 3


def test_timeout_is_retried_then_fails_in_bounded_time(server: FakeChatServer) -> None:
    server.script = ["slow"]
    server.slow_s = 1.5
    backend = _backend(server, timeout_s=0.2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(LmmError, match="timed out"):
        backend.generate([LmmRequest("hi")])
    assert time.monotonic() - started < 1.2
    assert len(server.bodies) == 2


def test_slow_then_fast_succeeds(server: FakeChatServer) -> None:
    server.script = ["slow", "ok"]
    server.slow_s = 0.8
    [response] = _backend(server, timeout_s=0.2, max_retries=1).generate([LmmRequest("hi")])
    assert response.text == server.content


@pytest.mark.parametrize("action", ["not-json", "no-choices"])
def test_malformed_response_bodies_are_retried_then_fail(server: FakeChatServer, action: str) -> None:
    server.script = [action]
    with pytest.raises(LmmError, match=r"not JSON|no choices"):
        _backend(server, max_retries=1).generate([LmmRequest("hi")])
    server.script = [action, "ok"]
    [response] = _backend(server, max_retries=1).generate([LmmRequest("hi")])
    assert response.text == server.content


def test_malformed_model_output_is_unknown_not_an_error(server: FakeChatServer) -> None:
    server.content = "I think it is a man {blanks: [broken"
    reranker = Reranker(RerankConfig(), _backend(server, logprobs=False))
    [outcome] = reranker.rerank_items([RerankItem("a man falls", 0.5, (_image(),))])
    assert outcome.error is None
    assert [b["answer"] for b in outcome.rationale["blanks"]] == ["UNKNOWN", "UNKNOWN"]
    assert outcome.verdict_source == "none" and outcome.cloze_score is None
    assert outcome.verification.value == "unverified" and outcome.fused_score == 0.5


def test_server_rejecting_logprobs_is_asked_again_without(server: FakeChatServer) -> None:
    server.script = ["reject-logprobs"]
    backend = _backend(server)
    [response] = backend.generate([LmmRequest("hi")])
    assert response.text == server.content and response.tokens == ()
    assert "logprobs" in server.bodies[0] and "logprobs" not in server.bodies[1]
    backend.generate([LmmRequest("again")])
    assert len(server.bodies) == 3 and "response_format" not in server.bodies[2]


def test_client_errors_are_not_retried(server: FakeChatServer) -> None:
    server.script = ["401"]
    with pytest.raises(LmmError, match="HTTP 401"):
        _backend(server).generate([LmmRequest("hi")])
    assert len(server.bodies) == 1


def test_unreachable_server_and_missing_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = OpenAIBackendConfig(
        type="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, retry_backoff_s=0.0
    )
    with pytest.raises(LmmError, match="cannot reach"):
        OpenAIBackend(config).generate([LmmRequest("hi")])
    with pytest.raises(LmmError, match="NO_SUCH_KEY_VAR"):
        OpenAIBackend(config.model_copy(update={"api_key_env": "NO_SUCH_KEY_VAR"}))


def test_concurrent_requests_keep_order(server: FakeChatServer) -> None:
    backend = _backend(server, max_concurrency=3, logprobs=False)
    responses = backend.generate([LmmRequest(f"q{i}") for i in range(5)])
    assert len(responses) == 5 and all(r.text == server.content for r in responses)
    assert sorted(b["messages"][-1]["content"] for b in server.bodies) == [f"q{i}" for i in range(5)]
    backend.close()
