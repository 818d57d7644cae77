"""The interface every LMM backend implements, and the registry that builds one from config.

A backend answers :class:`LmmRequest` (a system message, a user text and zero or more BGR images,
optionally after earlier turns of the same conversation) with :class:`LmmResponse` (the generated
text and, where the backend can, the log-probabilities of each generated token with its top
alternatives). Heavy libraries are imported inside the backend
modules, so importing this one costs nothing.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from agent.rerank.config import BackendConfig


class LmmError(RuntimeError):
    """The backend could not answer (model not loadable, server unreachable after retries, ...)."""


class BudgetError(LmmError):
    """The request was not sent: the call budget did not allow it in time (see :data:`RequestGate`)."""


RequestGate = Callable[[int], None]
"""Called by a backend with ``n`` before it sends ``n`` requests to the model (every HTTP request,
retries included; every decoded batch of the in-process backend). It blocks until the call budget
allows them and raises :class:`BudgetError` when it cannot in time, or :class:`LmmError` to abandon
the request (the service is closing)."""


@dataclass(frozen=True)
class Turn:
    """An earlier exchange of a conversation: what the user said and what the model answered."""

    user: str
    assistant: str


@dataclass(frozen=True)
class LmmRequest:
    """One question to the LMM.

    Attributes:
        prompt: the user message text (the last turn).
        images: BGR ``uint8`` images shown before the text, in order (may be empty); with
            ``history``, they are shown before the first turn's text instead.
        system: the system message, or None.
        json_output: ask for a JSON object where the backend supports it.
        history: earlier turns of the same conversation, oldest first; ``prompt`` follows them.
    """

    prompt: str
    images: tuple[np.ndarray, ...] = ()
    system: str | None = None
    json_output: bool = True
    history: tuple[Turn, ...] = ()

    def user_turns(self) -> list[tuple[str, str | None]]:
        """(user text, assistant answer or None for the turn to answer) of the whole conversation."""
        return [(t.user, t.assistant) for t in self.history] + [(self.prompt, None)]

    def __post_init__(self) -> None:
        for image in self.images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
                raise ValueError(f"LmmRequest images must be non-empty HxWx3 uint8 BGR, got {image.shape}")


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token: its text, natural-log probability and the top alternatives at its step."""

    text: str
    logprob: float
    top_logprobs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LmmResponse:
    """The LMM's answer to one request.

    Attributes:
        text: the generated text (special tokens removed).
        tokens: per generated token log-probabilities; empty when the backend gives none.
        latency_s: wall seconds the call took (for a batch: the whole batch's time).
    """

    text: str
    tokens: tuple[GeneratedToken, ...] = ()
    latency_s: float = 0.0


class LmmBackend(abc.ABC):
    """A large multimodal model that answers requests, one batch at a time (not thread-safe)."""

    name: str = "lmm"
    #: requests the backend decodes together in one :meth:`generate` call
    max_batch_size: int = 1
    #: called before every request reaches the model (see :data:`RequestGate`); None: no budget
    request_gate: RequestGate | None = None

    def _gate(self, requests: int) -> None:
        """Wait for the budget to allow ``requests`` requests (no-op without a gate)."""
        if self.request_gate is not None and requests > 0:
            self.request_gate(requests)

    @abc.abstractmethod
    def generate(self, requests: Sequence[LmmRequest]) -> list[LmmResponse]:
        """Answer each request, in order; raises :class:`LmmError` when the backend cannot answer."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release the model or connections."""

    def __enter__(self) -> LmmBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_BACKENDS: dict[str, tuple[str, str]] = {
    "transformers": ("agent.rerank.backends.transformers_backend", "TransformersBackend"),
    "openai": ("agent.rerank.backends.openai_backend", "OpenAIBackend"),
    "fleet": ("agent.fleet.lmm", "FleetLmmBackend"),
}


def build_backend(config: BackendConfig) -> LmmBackend:
    """Build the backend named by ``config.type`` (imports its module only now)."""
    try:
        module_name, class_name = _BACKENDS[config.type]
    except KeyError:
        raise LmmError(f"unknown LMM backend type {config.type!r}") from None
    factory: Callable[[BackendConfig], LmmBackend] = getattr(importlib.import_module(module_name), class_name)
    return factory(config)
