"""Any OpenAI-compatible chat-completions server: Ollama, vLLM, llama.cpp's server, NVIDIA NIM.

Images travel as base64 JPEG data URLs in ``image_url`` content parts. Greedy decoding
(temperature 0). A request with earlier turns sends the whole conversation (system, user with the
images, assistant, user, ...): the server keeps no state between calls, so the cost of a second
turn is the prompt again (servers with prefix caching, such as vLLM and llama.cpp, reuse it). Every
HTTP request, retries included, first passes the backend's request gate (the call budget).
Timeouts, connection errors, HTTP 429 and 5xx, and response bodies that are not
the expected JSON are retried with exponential backoff; other 4xx are not. A server that rejects
``logprobs`` or ``response_format`` with a 400 is asked again without them (and not asked for them
again). Uses only the standard library (``urllib``), so it needs no extra package.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2

from agent.rerank.backends.base import GeneratedToken, LmmBackend, LmmError, LmmRequest, LmmResponse
from agent.rerank.config import OpenAIBackendConfig

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
ERROR_BODY_CHARS = 300


class _RetryableError(Exception):
    """A failure worth another try (timeout, connection, 429, 5xx, unreadable body)."""


class OpenAIBackend(LmmBackend):
    """Sends each request as one chat completion; ``max_concurrency`` requests are in flight at once.

    Raises:
        LmmError: from :meth:`generate`, when a request still fails after ``max_retries`` retries,
            or at once on a 4xx other than 429.
    """

    def __init__(self, config: OpenAIBackendConfig) -> None:
        self.config = config
        self.name = f"openai:{config.model}"
        self.max_batch_size = config.max_concurrency
        self.url = f"{config.base_url}/chat/completions"
        self._api_key: str | None = None
        if config.api_key_env:
            self._api_key = os.environ.get(config.api_key_env)
            if not self._api_key:
                raise LmmError(f"environment variable {config.api_key_env} (the API key) is not set")
        self._use_logprobs = config.logprobs
        self._use_json_mode = config.json_mode
        self._pool = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="lmm-http")

    # --- request body ------------------------------------------------------------------------

    def _image_part(self, image: Any) -> dict[str, Any]:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.config.image_jpeg_quality])
        if not ok:
            raise LmmError("could not encode an image as JPEG")
        url = "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
        return {"type": "image_url", "image_url": {"url": url}}

    def _body(self, request: LmmRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        for index, (user, answer) in enumerate(request.user_turns()):
            if index == 0 and request.images:
                content: Any = [self._image_part(image) for image in request.images]
                content.append({"type": "text", "text": user})
            else:
                content = user
            messages.append({"role": "user", "content": content})
            if answer is not None:
                messages.append({"role": "assistant", "content": answer})
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
        }
        if self._use_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.config.top_logprobs
        if self._use_json_mode and request.json_output:
            body["response_format"] = {"type": "json_object"}
        return body

    # --- HTTP --------------------------------------------------------------------------------

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        http_request = urllib.request.Request(
            self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(http_request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:ERROR_BODY_CHARS].decode("utf-8", "replace")
            if exc.code == 429 or exc.code >= 500:
                raise _RetryableError(f"HTTP {exc.code}: {detail}") from exc
            raise LmmError(f"HTTP {exc.code} from {self.url}: {detail}") from exc
        except TimeoutError as exc:
            raise _RetryableError(f"timed out after {self.config.timeout_s:.1f} s") from exc
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            raise _RetryableError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from exc
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _RetryableError(f"response is not JSON: {raw[:80]!r}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            raise _RetryableError(f"response has no choices: {str(data)[:80]}")
        return data

    def _complete(self, request: LmmRequest) -> LmmResponse:
        started = time.perf_counter()
        attempt = 0
        while True:
            body = self._body(request)
            self._gate(1)  # every HTTP request, retries included, takes a token of the budget
            try:
                data = self._post(body)
                break
            except LmmError as exc:
                if "HTTP 400" in str(exc) and ("logprobs" in body or "response_format" in body):
                    log.warning(
                        "%s rejected logprobs/json mode (%s); not asking for them again", self.url, exc
                    )
                    self._use_logprobs = False
                    self._use_json_mode = False
                    continue
                raise
            except _RetryableError as exc:
                if attempt >= self.config.max_retries:
                    raise LmmError(f"{self.url}: {exc} (after {attempt + 1} attempts)") from exc
                delay = min(MAX_BACKOFF_S, self.config.retry_backoff_s * 2**attempt)
                log.info("LMM request failed (%s); retry %d in %.2f s", exc, attempt + 1, delay)
                attempt += 1
                time.sleep(delay)
        return self._parse(data, time.perf_counter() - started)

    @staticmethod
    def _parse(data: dict[str, Any], latency_s: float) -> LmmResponse:
        choice = data["choices"][0] if isinstance(data["choices"][0], dict) else {}
        message = choice.get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        tokens: list[GeneratedToken] = []
        logprobs = choice.get("logprobs")
        entries = logprobs.get("content") if isinstance(logprobs, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
                continue
            try:
                top = {
                    str(alt["token"]): float(alt["logprob"])
                    for alt in entry.get("top_logprobs") or []
                    if isinstance(alt, dict) and "token" in alt and "logprob" in alt
                }
                tokens.append(GeneratedToken(entry["token"], float(entry.get("logprob", float("-inf"))), top))
            except (TypeError, ValueError):
                continue
        return LmmResponse(text=text, tokens=tuple(tokens), latency_s=latency_s)

    def generate(self, requests: Sequence[LmmRequest]) -> list[LmmResponse]:
        if len(requests) <= 1 or self.config.max_concurrency == 1:
            return [self._complete(r) for r in requests]
        return list(self._pool.map(self._complete, requests))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
