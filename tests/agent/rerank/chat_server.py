"""A local OpenAI-compatible chat-completions server for the re-ranker tests (a test double on 127.0.0.1).

It is a real HTTP server (``http.server``), so the backend's requests, retries and timeouts are the
real ones; only the answers are scripted.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeChatServer:
    """A test double for an OpenAI-compatible server: answers POST /v1/chat/completions from a script.

    Each request pops the next action from ``script`` (the last one repeats): "ok", "500", "429",
    "401", "slow" (sleeps ``slow_s`` before answering), "not-json", "no-choices", or
    "reject-logprobs" (400 when the body asks for logprobs or JSON mode, else "ok").

    ``times`` holds the ``time.monotonic()`` at which each request arrived. ``responder``, when set,
    makes the content of an "ok" answer from the request body (e.g. a different answer per turn).
    """

    def __init__(self) -> None:
        self.script: list[str] = ["ok"]
        self.content = '{"blanks": {"1": "man", "4": "falling"}, "verdict": "yes"}'
        self.slow_s = 1.0
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self.responder: Callable[[dict[str, Any]], str] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.times.append(time.monotonic())
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    action = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                if action == "reject-logprobs":
                    if "logprobs" in body or "response_format" in body:
                        return self._send(400, b'{"error": "logprobs is not supported"}')
                    action = "ok"
                if action == "slow":
                    time.sleep(server.slow_s)
                    action = "ok"
                if action in {"500", "429", "401"}:
                    return self._send(int(action), b'{"error": "scripted"}')
                if action == "not-json":
                    return self._send(200, b"<html>gateway</html>")
                if action == "no-choices":
                    return self._send(200, b'{"choices": []}')
                return self._send(200, json.dumps(server.completion(body)).encode())

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.responder is not None:
            text = self.responder(body)
            return {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            }
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": self.content}}
        if body.get("logprobs"):
            pieces = ['{"blanks": {"1": "man", "4": "falling"}, "', "verdict", '": "', "yes", '"}']
            content = []
            for piece in pieces:
                top = [{"token": piece, "logprob": 0.0}]
                logprob = 0.0
                if piece == "yes":
                    logprob = math.log(0.75)
                    top = [{"token": "yes", "logprob": logprob}, {"token": "no", "logprob": math.log(0.25)}]
                content.append({"token": piece, "logprob": logprob, "top_logprobs": top})
            choice["logprobs"] = {"content": content}
        return {"id": "x", "object": "chat.completion", "choices": [choice]}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
