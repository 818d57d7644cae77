"""The two-step cloze on the prompts actually sent: the cloze turn never holds a masked word.

Two real backends: the OpenAI-compatible one against a local HTTP server (the request bodies it
received are checked) and the transformers one on the tiny random Qwen2-VL (the token ids given to
``model.generate`` are decoded and checked; the spy calls the real ``generate``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chat_server import FakeChatServer

from agent.rerank.backends.base import build_backend
from agent.rerank.config import OpenAIBackendConfig, RerankConfig, TransformersBackendConfig
from agent.rerank.lexicon import lemma
from agent.rerank.masker import RuleMasker
from agent.rerank.reranker import Reranker, RerankItem

QUERIES = [
    "a man in a red jacket falls off his bicycle",
    "a man pushes another man to the ground",
    "a person in a red shirt falls down",
    "someone lying on the ground next to a bicycle",
    "a woman wearing a blue t-shirt kicks a man",
    "a child throws a ball at a person",
    "a person climbing over the fence",
    "a man in a black hoodie is running away with a bag",
]
CONTEXT = "posture: lying; torso angle 80 degrees from upright"
# The test's own list of words a blank may hold that give nothing of it away, written from English
# grammar's closed classes (articles, possessive determiners, coordinating conjunctions, the
# prepositions that only place or relate). Deliberately not the prompt code's list: particles that
# complete a verb ("falls off", "falls down", "climbing over", "running away") are part of the masked
# behaviour here, so the cloze turn must not show them outside their blank either.
_ARTICLES = {"a", "an", "the"}
_POSSESSIVES = {"his", "her", "their", "its", "my", "your", "our"}
_CONJUNCTIONS = {"and", "or", "but"}
_PREPOSITIONS = {"of", "in", "at", "on", "to", "into", "onto", "from", "with", "by", "for"}
_FUNCTION_WORDS = _ARTICLES | _POSSESSIVES | _CONJUNCTIONS | _PREPOSITIONS


def hidden_words(query: str) -> set[str]:
    """Every content word a blank of the query hides, and its base form (not computed by the prompt code)."""
    hidden: set[str] = set()
    for blank in RuleMasker(6).mask(query).blanks:
        for word in re.findall(r"[a-z]{2,}", blank.text.lower()):
            if word not in _FUNCTION_WORDS:
                hidden |= {word, lemma(word)}
    return hidden


def leaks(text: str, hidden: set[str]) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z]{2,}", text) if w.lower() in hidden or lemma(w) in hidden]


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (80, 48, 3), dtype=np.uint8)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")


# --- OpenAI-compatible backend, over HTTP --------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    fake = FakeChatServer()

    def respond(body: dict[str, Any]) -> str:
        users = [m for m in body["messages"] if m["role"] == "user"]
        if len(users) == 1 and "blanks" in _text(users[0]["content"]):
            return json.dumps({"blanks": {"1": "man", "2": "UNKNOWN"}})
        return json.dumps({"verdict": "yes"})

    fake.responder = respond
    yield fake
    fake.close()


def test_openai_cloze_turn_never_holds_a_masked_word_and_the_verdict_turn_reveals_the_query(
    server: FakeChatServer,
) -> None:
    config = OpenAIBackendConfig(type="openai", base_url=server.base_url, model="m", logprobs=False)
    reranker = Reranker(RerankConfig(), build_backend(config))
    items = [RerankItem(q, 0.5, (_image(i),), CONTEXT) for i, q in enumerate(QUERIES)]
    outcomes = reranker.rerank_items(items)
    assert all(o.error is None and o.requests == 2 for o in outcomes)
    assert len(server.bodies) == 2 * len(QUERIES)  # max_concurrency 1: cloze, verdict, cloze, ...
    for index, query in enumerate(QUERIES):
        cloze_body, verdict_body = server.bodies[2 * index], server.bodies[2 * index + 1]
        hidden = hidden_words(query)
        assert hidden, query
        system, user = cloze_body["messages"]
        cloze_text = system["content"] + "\n" + _text(user["content"])
        assert leaks(cloze_text, hidden) == [], (query, cloze_text)
        assert query not in cloze_text and CONTEXT not in cloze_text
        assert [part["type"] for part in user["content"]] == ["image_url", "text"]
        # the verdict turn is the same conversation, one turn on: the cloze turn, its answer, the query
        roles = [m["role"] for m in verdict_body["messages"]]
        assert roles == ["system", "user", "assistant", "user"]
        assert verdict_body["messages"][:2] == cloze_body["messages"]
        assert verdict_body["messages"][2]["content"] == json.dumps({"blanks": {"1": "man", "2": "UNKNOWN"}})
        last = _text(verdict_body["messages"][3]["content"])
        assert query in last and CONTEXT in last
    assert all(o.verdict_probability == 1.0 and o.verification.value != "unverified" for o in outcomes)
    assert outcomes[0].verification.value == "verified"  # "man" fills blank 1 of the first query


def test_openai_one_step_shows_the_query_in_its_only_request(server: FakeChatServer) -> None:
    """The one-step scheme, kept for the cost comparison, leaks: this is what two_step fixes."""
    config = OpenAIBackendConfig(type="openai", base_url=server.base_url, model="m", logprobs=False)
    reranker = Reranker(RerankConfig(cloze_scheme="one_step"), build_backend(config))
    [outcome] = reranker.rerank_items([RerankItem(QUERIES[0], 0.5, (_image(0),))])
    assert outcome.requests == 1 and len(server.bodies) == 1
    text = _text(server.bodies[0]["messages"][1]["content"])
    assert QUERIES[0] in text and leaks(text, hidden_words(QUERIES[0]))


# --- transformers backend, in process ------------------------------------------------------------


def test_transformers_cloze_turn_never_holds_a_masked_word(tiny_qwen2vl: Path) -> None:
    pytest.importorskip("transformers")
    config = TransformersBackendConfig(
        type="transformers", model=tiny_qwen2vl, max_new_tokens=8, max_batch_size=4, warmup=False
    )
    backend = build_backend(config)
    sent: list[list[str]] = []  # the decoded token ids of each generate call, one text per request
    generate = backend.model.generate  # type: ignore[attr-defined]

    def spy(**kwargs: Any) -> Any:
        ids = kwargs["input_ids"]
        sent.append([backend.tokenizer.decode(row, skip_special_tokens=False) for row in ids])  # type: ignore[attr-defined]
        return generate(**kwargs)

    backend.model.generate = spy  # type: ignore[attr-defined]
    try:
        reranker = Reranker(RerankConfig(), backend)
        items = [RerankItem(q, 0.5, (_image(i),), CONTEXT) for i, q in enumerate(QUERIES)]
        outcomes = reranker.rerank_items(items)
    finally:
        backend.close()
    assert all(o.error is None and o.requests == 2 for o in outcomes)
    assert len(sent) == 2 * 2  # two batches of four, two turns each
    for batch in range(2):
        cloze_texts, verdict_texts = sent[2 * batch], sent[2 * batch + 1]
        for row, (cloze_text, verdict_text) in enumerate(zip(cloze_texts, verdict_texts, strict=True)):
            query = QUERIES[4 * batch + row]
            cloze_text = cloze_text.replace("<|endoftext|>", "")  # left padding
            turns = cloze_text.split("<|im_start|>")
            assert [t.split("\n", 1)[0] for t in turns[1:]] == ["system", "user", "assistant"]
            assert leaks(cloze_text, hidden_words(query)) == [], (query, cloze_text)
            assert query not in cloze_text and CONTEXT not in cloze_text
            # the verdict turn replays the cloze turn, then the model's answer, then reveals the query
            verdict_text = verdict_text.replace("<|endoftext|>", "")
            prefix = cloze_text[: cloze_text.rindex("<|im_start|>assistant")]
            assert verdict_text.startswith(prefix)
            last_user = verdict_text.split("<|im_start|>user\n")[-1]
            assert query in last_user and CONTEXT in last_user
