"""GET /search under concurrent requests, on the real server (uvicorn on 127.0.0.1), the real track
index (SQLite, usearch) and the tiny CLIP export: every answer is a 200 with the ranking a lone
scorer gives.

The scorer's text cache is made tiny here, so that texts are evicted while requests still use them.
With the default size (256) the same ``KeyError`` showed in about one request in a hundred to one in
a few thousand, depending on how many distinct texts came in (a text such as "a photo of a man."
that is also another text in a prompt template made it likelier)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.console.services import ConsoleServices
from agent.embedding import ClipEncoder
from agent.matching.config import MatchingConfig
from agent.matching.samples import TrackSample
from agent.queries import QueryRegistry
from agent.search.config import SearchConfig
from agent.search.index import TrackIndex
from agent.search.scorer import TextScorer

TOKEN = "search-race-token-0123456789"
THREADS = 8
REQUESTS_PER_THREAD = 30
TINY_CACHE = 10  # texts; one search needs 8 (4 templates, 4 normal prompts), 8 threads need 36
IMAGE = np.full((240, 320, 3), 90, np.uint8)


@dataclass
class SearchApi:
    server: ApiServer
    encoder: ClipEncoder
    index: TrackIndex


@pytest.fixture(scope="module")
def search_api(tmp_path_factory: pytest.TempPathFactory, clip_fp32: Path) -> Iterator[SearchApi]:
    root = tmp_path_factory.mktemp("search-race")
    encoder = ClipEncoder.load(clip_fp32, providers=["cpu"])
    index = TrackIndex(root / "search", SearchConfig())
    rng = np.random.default_rng(0)
    width = int(encoder.embed_texts(["x"]).shape[-1])
    samples = []
    for track_id in range(12):
        vector = rng.normal(size=width).astype(np.float32)
        box = (10.0, 10.0, 60.0, 110.0)
        samples.append(TrackSample("cam", track_id, 1.0e9, IMAGE, box, vector / np.linalg.norm(vector)))
    index.observe(samples)
    index.flush()
    scorer = TextScorer(encoder, MatchingConfig(), cache_size=TINY_CACHE)
    console = ConsoleServices(sessions=None, index=index, scorer=scorer, pages=False)
    registry = QueryRegistry(root / "state.db")
    context = ApiContext(registry=registry, token=TOKEN, health=dict, metrics=str, console=console)
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    yield SearchApi(server, encoder, index)
    server.stop()
    registry.close()
    index.close()
    encoder.close()


def _search(server: ApiServer, text: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        path = f"/search?text={quote(text)}&limit=5"
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_concurrent_searches_all_answer_200_with_the_lone_ranking(search_api: SearchApi) -> None:
    texts = [f"a person number {i}" for i in range(THREADS)]
    lone = TextScorer(search_api.encoder, MatchingConfig())  # its own cache, one thread
    expected = {
        text: [
            hit.key for hit in search_api.index.search(lone.query_vector(text), lone.scorer(text), limit=5)
        ]
        for text in texts
    }
    failures: list[tuple[str, int, bytes]] = []
    start = threading.Barrier(THREADS)

    def search_repeatedly(text: str) -> None:
        start.wait()
        for _ in range(REQUESTS_PER_THREAD):
            status, body = _search(search_api.server, text)
            if status != 200 or [hit["key"] for hit in json.loads(body)["results"]] != expected[text]:
                failures.append((text, status, body[:200]))

    threads = [threading.Thread(target=search_repeatedly, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    total = THREADS * REQUESTS_PER_THREAD
    assert failures == [], f"{len(failures)} of {total} searches failed, for example {failures[:2]}"
