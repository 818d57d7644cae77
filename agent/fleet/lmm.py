"""The re-ranker's LMM over NATS: ``watchword lmm serve`` workers and the ``fleet`` backend.

A site without a GPU sets ``rerank.backend: {type: fleet}``; each LMM request goes out as a NATS
request on ``watchword.<site>.lmm`` (its replies come back under ``watchword.<site>.inbox``, so
the site's credentials need nothing outside its own subjects) and any worker of the queue group
``watchword-lmm`` answers it: workers run the backend of a re-ranking config (in process or
OpenAI-compatible) and share the load. A worker that dies mid-request never answers: the request
times out after ``timeout_s`` and the re-ranker hands the candidate on ``unverified`` (reason
``error``), as for any backend failure. The site's call budget (``rerank.calls_per_minute``) is
applied before each request leaves, as for every backend.

Wire format (JSON): a request has ``prompt``, ``system``, ``json_output``, ``history`` ([[user,
assistant]...]) and ``images`` (base64 JPEG); an answer has ``text``, ``tokens`` ([[text, logprob,
{alternative: logprob}]...]) and ``latency_s``, or ``error``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from agent.fleet.config import FleetBackendConfig
from agent.fleet.link import LinkError, NatsLink
from agent.fleet.subjects import PREFIX
from agent.rerank.backends.base import GeneratedToken, LmmBackend, LmmError, LmmRequest, LmmResponse, Turn

log = logging.getLogger(__name__)

QUEUE = "watchword-lmm"
JPEG_QUALITY = 90


def lmm_subject(site: str) -> str:
    """``watchword.<site>.lmm``: a site's LMM requests."""
    return f"{PREFIX}.{site}.lmm"


def inbox_prefix(site: str) -> str:
    """Where a site's request replies arrive (under its own subjects)."""
    return f"{PREFIX}.{site}.inbox"


def encode_request(request: LmmRequest) -> bytes:
    images = []
    for image in request.images:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise LmmError("cannot encode an image as JPEG")
        images.append(base64.b64encode(jpeg.tobytes()).decode("ascii"))
    body = {
        "prompt": request.prompt,
        "system": request.system,
        "json_output": request.json_output,
        "history": [[t.user, t.assistant] for t in request.history],
        "images": images,
    }
    return json.dumps(body).encode("utf-8")


def decode_request(data: bytes) -> LmmRequest:
    body = json.loads(data)
    images = []
    for text in body.get("images", []):
        image = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError("an image that is not JPEG")
        images.append(image)
    return LmmRequest(
        prompt=str(body["prompt"]),
        images=tuple(images),
        system=body.get("system"),
        json_output=bool(body.get("json_output", True)),
        history=tuple(Turn(str(u), str(a)) for u, a in body.get("history", [])),
    )


def encode_response(response: LmmResponse) -> bytes:
    tokens = [[t.text, t.logprob, t.top_logprobs] for t in response.tokens]
    return json.dumps({"text": response.text, "tokens": tokens, "latency_s": response.latency_s}).encode()


def decode_response(data: bytes) -> LmmResponse:
    body = json.loads(data)
    if "error" in body:
        raise LmmError(f"the LMM worker failed: {body['error']}")
    tokens = tuple(
        GeneratedToken(str(t), float(lp), {str(k): float(v) for k, v in top.items()})
        for t, lp, top in body["tokens"]
    )
    return LmmResponse(text=str(body["text"]), tokens=tokens, latency_s=float(body.get("latency_s", 0.0)))


class FleetLmmBackend(LmmBackend):
    """Sends each request to the fleet's LMM workers (see the module doc)."""

    name = "fleet"
    max_batch_size = 1

    def __init__(self, config: FleetBackendConfig) -> None:
        if config.site is None:
            raise LmmError("rerank.backend fleet needs a site (or the agent's fleet: section)")
        self.config, self.site = config, config.site
        self.link = NatsLink(config, f"watchword-{config.site}-lmm", inbox_prefix=inbox_prefix(config.site))

    def generate(self, requests: Sequence[LmmRequest]) -> list[LmmResponse]:
        self.link.start()  # connects in the background on first use (no network in the constructor)
        answers = []
        for request in requests:
            self._gate(1)
            data = encode_request(request)
            started = time.perf_counter()
            try:
                reply = self.link.call(self._ask(data), self.config.timeout_s + 1.0)
            except (LinkError, TimeoutError) as exc:
                raise LmmError(f"no LMM worker answered within {self.config.timeout_s} s: {exc}") from exc
            except LmmError:
                raise
            except Exception as exc:  # no responders, connection lost mid-request
                raise LmmError(f"LMM request over NATS failed: {exc!r}") from exc
            response = decode_response(reply)
            answers.append(
                LmmResponse(response.text, response.tokens, latency_s=time.perf_counter() - started)
            )
        return answers

    async def _ask(self, data: bytes) -> bytes:
        for _ in range(int(min(self.config.timeout_s, 5.0) / 0.05)):  # the first connection
            if self.link.connected:
                break
            await asyncio.sleep(0.05)
        if not self.link.connected:
            raise LmmError(f"not connected to {self.link.shown_url} ({self.link.last_problem})")
        message = await self.link.client().request(
            lmm_subject(self.site), data, timeout=self.config.timeout_s
        )
        return bytes(message.data)

    def close(self) -> None:
        self.link.close()


class LmmWorker:
    """One worker of the queue group: answers the sites' requests with ``backend``, one at a time.

    Args:
        link: the worker's connection (to the hub, or any server of the account).
        backend: the LMM (not thread-safe: one request at a time).
        sites: the sites whose requests it answers (one subscription each: the hub forwards a
            leaf's messages only on subjects that site may use).
    """

    def __init__(self, link: NatsLink, backend: LmmBackend, sites: Sequence[str]) -> None:
        self.link, self.backend, self.sites = link, backend, list(sites)
        self.answered = 0
        self.failed = 0
        self._lock: asyncio.Lock | None = None
        self.ready = False

    def start(self) -> None:
        self.link.once_connected(self._subscribe)

    async def _subscribe(self) -> None:
        self._lock = asyncio.Lock()
        client = self.link.client()
        for site in self.sites:
            await client.subscribe(lmm_subject(site), queue=QUEUE, cb=self._answer)
        await client.flush()
        self.ready = True
        log.info("lmm worker: serving %d sites on %s", len(self.sites), self.link.shown_url)

    async def _answer(self, message: Any) -> None:
        assert self._lock is not None
        async with self._lock:
            try:
                request = decode_request(message.data)
                loop = asyncio.get_running_loop()
                response = (await loop.run_in_executor(None, self.backend.generate, [request]))[0]
                body = encode_response(response)
                self.answered += 1
            except Exception as exc:  # a bad request or a failing model: the site hears why
                self.failed += 1
                log.warning("lmm worker: %s: %s", message.subject, exc)
                body = json.dumps({"error": str(exc)}).encode()
            await message.respond(body)

    def close(self) -> None:
        self.link.close()
