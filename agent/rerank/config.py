"""Configuration of the AnomalyLMM re-ranker: the LMM backend, the call budget and the score fusion.

The LMM backend is chosen by its ``type`` (``transformers`` in process, or ``openai`` for any
OpenAI-compatible chat-completions server). Every model is strict (unknown keys, infinities, NaN and
YAML booleans for numbers refused) and frozen, like the rest of the agent's config
(``agent.config``), into which ``RerankConfig`` nests as ``rerank:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from agent.config_rules import StrictConfigModel
from agent.config_yaml import ConfigError, parse_yaml_model
from agent.fleet.config import FleetBackendConfig


class TransformersBackendConfig(StrictConfigModel):
    """A Hugging Face vision-language model run in process (Qwen2-VL, Qwen2.5-VL, SmolVLM, LLaVA, ...).

    ``model`` is a local directory holding the weights, the processor and its chat template
    (``watchword models pull`` puts them there). Decoding is greedy. ``quantization`` 4bit (NF4) and
    8bit go through bitsandbytes and need CUDA; on the CPU, 8bit is torch's dynamic int8
    quantization of the linear layers and 4bit is refused.
    """

    type: Literal["transformers"]
    model: Path
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N")
    quantization: Literal["none", "4bit", "8bit"] = "none"
    max_new_tokens: int = Field(96, ge=8, le=1024, description="tokens generated per answer")
    max_batch_size: int = Field(4, ge=1, le=64, description="candidates decoded together")
    top_logprobs: int = Field(5, ge=0, le=20, description="alternatives kept per generated token (0: none)")
    warmup: bool = Field(True, description="run one tiny generation at load, so the first call is not slow")

    @field_validator("model")
    @classmethod
    def _is_model_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"model directory not found: {value}")
        return value

    @model_validator(mode="after")
    def _cpu_cannot_do_nf4(self) -> TransformersBackendConfig:
        if self.device == "cpu" and self.quantization == "4bit":
            raise ValueError("4bit (NF4) quantization needs a CUDA device; use 8bit or none on the CPU")
        return self


class OpenAIBackendConfig(StrictConfigModel):
    """Any OpenAI-compatible chat-completions server: Ollama, vLLM, llama.cpp's server, NVIDIA NIM.

    ``base_url`` is the API root (``http://localhost:11434/v1``); requests go to
    ``{base_url}/chat/completions``. The key, when the server wants one, is read from the
    environment variable named by ``api_key_env`` so it never sits in the config file.
    """

    type: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://")
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(30.0, gt=0, le=600, description="per HTTP request")
    max_retries: int = Field(2, ge=0, le=10, description="on timeouts, connection errors, 429 and 5xx")
    retry_backoff_s: float = Field(0.5, ge=0, le=30, description="first retry delay; doubles each retry")
    logprobs: bool = Field(True, description="ask for token log-probabilities (verdict probability)")
    top_logprobs: int = Field(5, ge=1, le=20)
    json_mode: bool = Field(True, description="ask for response_format json_object")
    max_tokens: int = Field(96, ge=8, le=4096)
    max_concurrency: int = Field(1, ge=1, le=32, description="requests in flight at once (the batch)")
    image_jpeg_quality: int = Field(90, ge=30, le=100)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


# ``fleet``: the fleet's LMM workers over NATS (agent/fleet/lmm.py, ``watchword lmm serve``)
BackendConfig = Annotated[
    TransformersBackendConfig | OpenAIBackendConfig | FleetBackendConfig, Field(discriminator="type")
]


class FusionWeights(StrictConfigModel):
    """Weights of the fused score ``coarse * c + cloze * z + verdict * v`` (they need not sum to 1).

    Defaults: the coarse retriever keeps half the say (0.5), cloze agreement 0.3 and the yes/no
    verdict 0.2, so a confident LMM can reorder candidates whose coarse scores are close but cannot
    lift a poor coarse match on its own. With all three in [0, 1] and weights summing to 1 the fused
    score is in [0, 1] too.
    """

    coarse: float = Field(0.5, ge=0)
    cloze: float = Field(0.3, ge=0)
    verdict: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> FusionWeights:
        if self.coarse + self.cloze + self.verdict <= 0:
            raise ValueError("at least one fusion weight must be positive")
        return self


class RerankConfig(StrictConfigModel):
    """The LMM re-ranking stage: which backend, how often it may be called, and how scores fuse.

    The budget: at most ``calls_per_minute`` LMM requests in any 60-second window (every HTTP
    request, retries included; a candidate takes two with ``two_step``, one with ``one_step`` or
    when its query has no blank to fill), and a candidate that waited longer than ``deadline_s`` in
    the candidate queue (``matching.candidate_queue``, the one queue in front of this stage) is
    handed on ``unverified`` (reason ``deadline``). Both are counted in the stage's statistics.
    """

    enabled: bool = False
    backend: BackendConfig | None = None
    calls_per_minute: float = Field(30.0, gt=0, le=6000)
    burst: int | None = Field(
        None,
        ge=1,
        le=64,
        description="requests that may start back to back (bucket size); None: one batch's requests",
    )
    deadline_s: float = Field(10.0, gt=0, description="seconds in the queue after which a candidate is stale")
    batch_size: int = Field(1, ge=1, le=64, description="candidates per backend call, where it batches")
    top_n: int = Field(3, ge=1, le=100, description="benchmark: re-rank the top N of each query")
    include_frame: bool = Field(False, description="also show the LMM the whole frame with the box drawn")
    crop_padding: float = Field(0.15, ge=0, le=2, description="crop margin as a fraction of the box size")
    max_blanks: int = Field(6, ge=1, le=16, description="behaviour words masked per query at most")
    masker: Literal["rule", "lmm"] = "rule"
    weights: FusionWeights = FusionWeights()
    accept_threshold: float = Field(
        0.5, ge=0, le=1, description="verified when the fused score is this or more (and the LMM supports it)"
    )
    support_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="verified only when what the LMM said (verdict and blank agreement) reaches this",
    )
    cloze_scheme: Literal["two_step", "one_step"] = Field(
        "two_step",
        description="two_step: blanks asked with the query masked, the query revealed only for the "
        "verdict (2 requests a candidate); one_step: one request that shows the query (leaks the "
        "masked words; kept to measure the cost)",
    )

    @model_validator(mode="after")
    def _backend_when_enabled(self) -> RerankConfig:
        if self.enabled and self.backend is None:
            raise ValueError("enabled re-ranking needs a backend (type: transformers, openai or fleet)")
        return self

    @model_validator(mode="after")
    def _burst_fits_a_batch(self) -> RerankConfig:
        if self.burst is not None and self.burst < self.batch_size:
            raise ValueError(f"burst ({self.burst}) must be at least batch_size ({self.batch_size})")
        if self.burst is not None and self.cloze_scheme == "two_step" and self.burst < 2:
            raise ValueError(
                "burst must be at least 2 with cloze_scheme two_step: a candidate's two turns go out "
                "back to back (a replay on media time cannot wait between them)"
            )
        return self

    @property
    def effective_burst(self) -> int:
        """The token bucket size: ``burst``, or when unset the requests of one batch (``batch_size``,
        twice that with ``two_step``)."""
        if self.burst is not None:
            return self.burst
        return self.batch_size * (2 if self.cloze_scheme == "two_step" else 1)


def load_rerank_config(path: str | Path) -> RerankConfig:
    """Read a re-ranking config from YAML: the ``rerank:`` section of an agent config, or a file of its keys.

    ``${ENV_VAR}`` references are expanded as in the agent config. Raises
    :class:`agent.config_yaml.ConfigError` naming the file, line and key path of each problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_yaml_model(RerankConfig, text, str(path), section="rerank", what="re-ranking configuration")
