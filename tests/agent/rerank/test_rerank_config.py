"""The re-ranking config: defaults, validation, and loading from YAML with the bad key's line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import ConfigError
from agent.rerank.config import OpenAIBackendConfig, RerankConfig, load_rerank_config

REPO = Path(__file__).resolve().parents[3]


def test_defaults_are_off_and_documented() -> None:
    config = RerankConfig()
    assert not config.enabled and config.backend is None
    assert (config.weights.coarse, config.weights.cloze, config.weights.verdict) == (0.5, 0.3, 0.2)
    assert config.batch_size == 1 and config.cloze_scheme == "two_step"
    assert config.effective_burst == 2  # one batch's requests: the cloze turn and the verdict turn
    assert RerankConfig(cloze_scheme="one_step", batch_size=3).effective_burst == 3
    assert RerankConfig(burst=5).effective_burst == 5
    assert config.top_n == 3 and config.masker == "rule"


def test_example_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMM_URL", raising=False)
    monkeypatch.setenv("LMM_MODEL", "qwen2.5-vl-7b-instruct")
    config = load_rerank_config(REPO / "configs" / "rerank.example.yaml")
    assert config.enabled
    assert isinstance(config.backend, OpenAIBackendConfig)
    assert config.backend.base_url == "http://localhost:11434/v1"
    assert config.backend.model == "qwen2.5-vl-7b-instruct"


def test_bare_mapping_and_errors_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "rerank.yaml"
    path.write_text("backend:\n  type: openai\n  base_url: http://h:1/v1/\n  model: m\n")
    config = load_rerank_config(path)
    assert config.backend is not None and config.backend.type == "openai"
    assert isinstance(config.backend, OpenAIBackendConfig) and config.backend.base_url == "http://h:1/v1"

    path.write_text("rerank:\n  enabled: true\n  calls_per_minte: 5\n  weights:\n    coarse: -1\n")
    with pytest.raises(ConfigError) as error:
        load_rerank_config(path)
    message = str(error.value)
    assert "rerank.yaml:3: rerank.calls_per_minte: unknown key" in message
    assert "rerank.yaml:5: rerank.weights.coarse" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 4, "burst": 2}, "burst"),
        ({"enabled": True}, "needs a backend"),
        ({"backend": {"type": "grpc"}}, "grpc"),
        ({"backend": {"type": "openai", "base_url": "ftp://x", "model": "m"}}, "base_url"),
    ],
)
def test_invalid_configs(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RerankConfig.model_validate(overrides)


def test_two_step_needs_a_bucket_for_both_turns() -> None:
    with pytest.raises(ValueError, match="burst must be at least 2"):
        RerankConfig(burst=1)
    assert RerankConfig(burst=1, cloze_scheme="one_step").effective_burst == 1
