"""Finding 1: a person the LMM rejected cannot hold the LMM from everyone else.

On main (``watchword eval replay --frames`` over these records, the stand-in below): 40 requests on
the rejected gate person, none on the dock person, whose alert opened at 72 s unverified, and the
gate person opened an alert too. Here both cameras' records go, interleaved, through the live
decision core with the LMM on its own thread (each answer back before the next frame: an LMM
faster than the frame rate), its budget and the queue on media time so the run is exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, AlertEventKind
from agent.config import AgentConfig
from agent.decision.core import DecisionCore, RunClock
from agent.decision.verifier import LmmWorker
from agent.evaluation.replay_frames import replay_frames
from agent.evaluation.replay_rerank import FramePixels
from agent.matching.config import MatchingConfig
from agent.queries import Query, QueryRegistry
from agent.rerank.backends.base import build_backend
from agent.rerank.config import RerankConfig
from agent.rerank.service import RerankService
from tests.agent.decision import rejection_scenario as scenario
from tests.agent.rerank.chat_server import FakeChatServer

REJECTION_COOLDOWN_S = 60.0


@pytest.fixture
def query(tmp_path: Path) -> Query:
    registry = QueryRegistry(tmp_path / "q.db")
    query = registry.add("a person loitering by the door", severity="warning", threshold=0.5)
    registry.close()
    return query


def run(query: Query, server: FakeChatServer) -> tuple[list[AlertEvent], list[str], DecisionCore]:
    config = RerankConfig.model_validate(
        {
            "enabled": True,
            "calls_per_minute": 30,
            "deadline_s": 30,
            "accept_threshold": 0.0,
            "backend": {"type": "openai", "base_url": server.base_url, "model": "m", "retry_backoff_s": 0},
        }
    )
    clock = RunClock()
    assert config.backend is not None
    backend = build_backend(config.backend)
    stage = RerankService(config, backend, clock=clock)  # the budget on the run's media time
    events: list[AlertEvent] = []
    core = DecisionCore(
        MatchingConfig(window_s=2.0, rejection_cooldown_s=REJECTION_COOLDOWN_S),
        AlertsConfig(cooldown_s=60.0),
        {query.id: query}.get,
        events.extend,
        verifier=LmmWorker(stage),
        run_clock=clock,
    )
    try:
        for record in scenario.records(query.id):
            core.feed(record)
            assert core.wait_idle(10.0), "the stand-in LMM answers within seconds"
        core.finish()
    finally:
        core.close(timeout_s=2.0)
        backend.close()
    return events, [scenario.colour_of(body) for body in server.bodies], core


def test_a_rejected_person_cannot_keep_the_lmm_from_a_real_event(query: Query) -> None:
    server = FakeChatServer()
    server.responder = scenario.lmm_answer
    try:
        events, asked, core = run(query, server)
    finally:
        server.close()
    opened = [e for e in events if e.kind is AlertEventKind.OPENED]
    # the dock person is verified within 10 s of appearing, the only alert of the run
    assert [(e.episode.camera_id, e.episode.track_id) for e in opened] == [("dock", scenario.DOCK_TRACK)]
    dock = opened[0].episode
    assert dock.latest.verification == "verified"
    assert scenario.DOCK_FROM_S <= dock.started_at <= scenario.DOCK_FROM_S + 10.0, dock.started_at
    # the bound: a rejected person is asked again only once the rejection cooldown has passed, so
    # in T media seconds at most 1 + T / cooldown candidacies (2 requests each, two-step cloze)
    bound = 2 * (1 + int(scenario.SECONDS // REJECTION_COOLDOWN_S))
    assert 0 < asked.count("red") <= bound, asked
    assert asked.count("blue") >= 2 and "other" not in asked
    stats = core.stats()
    assert stats.rejected == asked.count("red") // 2 and stats.held_rejected > 0


def test_without_the_memory_the_rejected_person_takes_more_of_the_lmm(query: Query) -> None:
    """The same run with ``rejection_cooldown_s`` 0 (nothing remembered): the gate person is asked
    every time the budget allows; served in turn, the dock person still gets their answer."""
    global REJECTION_COOLDOWN_S
    server = FakeChatServer()
    server.responder = scenario.lmm_answer
    saved, REJECTION_COOLDOWN_S = REJECTION_COOLDOWN_S, 0.0
    try:
        events, asked, _ = run(query, server)
    finally:
        REJECTION_COOLDOWN_S = saved
        server.close()
    assert asked.count("red") > 2 * (1 + int(scenario.SECONDS // 60.0))
    opened = [e.episode for e in events if e.kind is AlertEventKind.OPENED]
    assert [(e.camera_id, e.track_id) for e in opened] == [("dock", scenario.DOCK_TRACK)]


def test_the_frames_replay_decides_the_same_through_the_same_core(query: Query, tmp_path: Path) -> None:
    """``eval replay --frames`` over the recorded scenario, pixels read back from the recordings, the
    LMM called on the core's thread: the alerts and the requests of the live run above."""
    frames, data = scenario.write_recording(tmp_path, query.id)
    config = AgentConfig.model_validate({**data, "matching": {"window_s": 2.0}})
    server = FakeChatServer()
    server.responder = scenario.lmm_answer
    rerank = RerankConfig.model_validate(
        {
            "enabled": True,
            "calls_per_minute": 30,
            "deadline_s": 30,
            "accept_threshold": 0.0,
            "backend": {"type": "openai", "base_url": server.base_url, "model": "m", "retry_backoff_s": 0},
        }
    )
    assert rerank.backend is not None
    backend = build_backend(rerank.backend)
    clock = RunClock()
    pixels = FramePixels(config)
    try:
        result = replay_frames(
            frames, config, [query], RerankService(rerank, backend, clock=clock), clock, pixels
        )
    finally:
        pixels.close()
        backend.close()
        server.close()
    asked = [scenario.colour_of(body) for body in server.bodies]
    assert [(a.camera, a.track_id, a.verified) for a in result.alerts] == [
        ("dock", scenario.DOCK_TRACK, True)
    ]
    assert result.alerts[0].time_s <= scenario.DOCK_FROM_S + 10.0
    assert 0 < asked.count("red") <= 2 * (1 + int(scenario.SECONDS // 60.0)), asked
