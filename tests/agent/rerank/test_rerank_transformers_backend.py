"""The transformers backend end to end on a tiny random Qwen2-VL saved to disk and loaded by its real code."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

pytest.importorskip("transformers", reason="the transformers backend needs the lmm extra")

from agent.rerank.backends.base import LmmError, LmmRequest, build_backend
from agent.rerank.backends.transformers_backend import TransformersBackend
from agent.rerank.config import RerankConfig, TransformersBackendConfig
from agent.rerank.fusion import fuse
from agent.rerank.reranker import Reranker, RerankItem

QUERY = "a man in a red jacket falls off his bicycle"


@pytest.fixture(scope="module")
def model_dir(tiny_qwen2vl: Path) -> Path:
    return tiny_qwen2vl


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> TransformersBackend:
    config = TransformersBackendConfig(
        type="transformers",
        model=model_dir,
        device="cpu",
        max_new_tokens=12,
        max_batch_size=2,
        top_logprobs=4,
    )
    built = build_backend(config)
    assert isinstance(built, TransformersBackend)
    return built


def _images(seed: int, count: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8) for _ in range(count))


def test_loads_through_auto_classes_and_generates_deterministically(backend: TransformersBackend) -> None:
    assert type(backend.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(backend.processor).__name__ == "Qwen2VLProcessor"
    requests = [
        LmmRequest("Fill the blanks.", _images(1), system="Be careful."),
        LmmRequest("Does the image match?", _images(2, count=2)),
    ]
    first = backend.generate(requests)
    second = backend.generate(requests)
    assert [r.text for r in first] == [r.text for r in second]
    assert [[t.text for t in r.tokens] for r in first] == [[t.text for t in r.tokens] for r in second]
    for response in first:
        assert 0 < len(response.tokens) <= 12
        assert response.latency_s > 0
        for token in response.tokens:
            assert token.logprob <= 0.0 and math.isfinite(token.logprob)
            assert 1 <= len(token.top_logprobs) <= 4
            # greedy decoding: the chosen token is the most likely one
            assert token.logprob == pytest.approx(max(token.top_logprobs.values()), abs=1e-5)


def test_text_only_request(backend: TransformersBackend) -> None:
    [response] = backend.generate([LmmRequest("List the words.", json_output=True)])
    assert isinstance(response.text, str) and response.tokens


def test_reranker_on_the_tiny_model_is_deterministic_unknown_and_fused(backend: TransformersBackend) -> None:
    config = RerankConfig(include_frame=True)
    reranker = Reranker(config, backend)
    items = [RerankItem(QUERY, 0.6, _images(3, count=2)), RerankItem(QUERY, 0.3, _images(4))]
    outcomes = reranker.rerank_items(items)
    again = reranker.rerank_items(items)
    for outcome, repeat, item in zip(outcomes, again, items, strict=True):
        assert outcome.error is None
        assert outcome.rationale == {**repeat.rationale, "latency_s": outcome.rationale["latency_s"]}
        # a random model writes no JSON: every blank is UNKNOWN, so there is no cloze score
        assert [b["answer"] for b in outcome.rationale["blanks"]] == ["UNKNOWN"] * 5
        assert outcome.cloze_score is None
        assert outcome.fused_score == pytest.approx(
            fuse(item.coarse_score, None, outcome.verdict_probability, config.weights)
        )
        if outcome.verdict_probability is None:  # gibberish: unverified, and the coarse score unchanged
            assert outcome.verification.value == "unverified" and outcome.fused_score == item.coarse_score
        assert outcome.rationale["backend"].startswith("transformers:")
        assert outcome.rationale["raw_output"] == outcome.rationale["raw_output"][:500]
    assert outcomes[0].fused_score is not None and outcomes[1].fused_score is not None
    assert outcomes[0].fused_score > outcomes[1].fused_score  # same LMM evidence, coarse score decides


def test_cpu_int8_dynamic_quantization(model_dir: Path) -> None:
    config = TransformersBackendConfig(
        type="transformers", model=model_dir, quantization="8bit", max_new_tokens=8, warmup=False
    )
    backend = TransformersBackend(config)
    [response] = backend.generate([LmmRequest("Fill the blanks.", _images(5))])
    assert response.tokens and all(t.logprob <= 0 for t in response.tokens)
    assert type(backend.model.lm_head).__module__.startswith("torch.ao.nn.quantized.dynamic")


def test_bad_configurations_fail_clearly(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="4bit"):
        TransformersBackendConfig(type="transformers", model=model_dir, quantization="4bit")
    with pytest.raises(ValidationError, match="model directory not found"):
        TransformersBackendConfig(type="transformers", model=tmp_path / "missing")
    with pytest.raises(LmmError, match="cannot load the processor"):
        TransformersBackend(TransformersBackendConfig(type="transformers", model=tmp_path))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(LmmError, match="CUDA is not available"):
            TransformersBackend(
                TransformersBackendConfig(type="transformers", model=model_dir, device="cuda")
            )


def test_template_without_system_role_gets_the_system_text_in_the_user_turn(
    model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    strict = tmp_path / "no-system"
    shutil.copytree(model_dir, strict)
    template = (strict / "chat_template.jinja").read_text()
    guard = (
        "{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
    )
    (strict / "chat_template.jinja").write_text(guard + template)
    backend = TransformersBackend(
        TransformersBackendConfig(type="transformers", model=strict, max_new_tokens=8, warmup=False)
    )
    request = LmmRequest("Fill the blanks.", _images(6), system="Be careful.")
    text = backend._prompt_text(request)
    assert "<|im_start|>system" not in text
    assert (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Be careful.\n\nFill the blanks." in text
    )
    [response] = backend.generate([request])
    assert response.tokens
