"""Try-before-save from the hub: a draft fleet query tried against one site's recent tracks.

The fleet console sends the draft (the body of the agent's ``POST /queries/try``) on
``watchword.<site>.try`` with a reply subject under the site's own subjects; the site's agent runs
it through its own API on loopback (the same code as its console's try, over its track index) and
answers with that API's JSON, or ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from agent.fleet.link import NatsLink
from agent.fleet.subjects import PREFIX

log = logging.getLogger(__name__)

# (API base URL, bearer token or None) of the running agent, or None while its API is not up
ApiEndpoint = Callable[[], tuple[str, str | None] | None]


def try_subject(site: str) -> str:
    """``watchword.<site>.try``: drafts to try at a site."""
    return f"{PREFIX}.{site}.try"


def try_reply_prefix(site: str) -> str:
    """Where a site's answers to drafts go (its own subjects)."""
    return f"{PREFIX}.{site}.tryreply"


class TryResponder:
    """Answers the hub's drafts at a site through the agent's own ``POST /queries/try``."""

    def __init__(self, link: NatsLink, site: str, api: ApiEndpoint, timeout_s: float = 20.0) -> None:
        self.link, self.site, self.api, self.timeout_s = link, site, api, timeout_s

    def start(self) -> None:
        self.link.once_connected(self._subscribe)

    async def _subscribe(self) -> None:
        await self.link.client().subscribe(try_subject(self.site), cb=self._answer)

    async def _answer(self, message: Any) -> None:
        if not message.reply or not message.reply.startswith(try_reply_prefix(self.site) + "."):
            return
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, self._try, bytes(message.data))
        await self.link.client().publish(message.reply, body)

    def _try(self, data: bytes) -> bytes:
        endpoint = self.api()
        if endpoint is None:
            return json.dumps({"error": "the site's API is not running (api.enabled)"}).encode()
        url, token = endpoint
        request = urllib.request.Request(url + "/queries/try", data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return bytes(reply.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:2000]
            return json.dumps({"error": f"{exc.code}: {detail}"}).encode()
        except OSError as exc:
            return json.dumps({"error": str(exc)}).encode()
