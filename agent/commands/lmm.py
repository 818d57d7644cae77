"""``watchword lmm serve``: the re-ranker's LMM as a worker of the fleet (NATS queue group).

Sites with ``rerank.backend: {type: fleet}`` send their LMM requests to the workers; start as many
workers as there are GPUs (on one machine or several), each with the backend of a re-ranking
config (``rerank.backend``: ``transformers`` in process, or ``openai`` for an OpenAI-compatible
server). They share the load; one that dies costs the request in flight a timeout.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lmm", help="the re-ranker's LMM as a fleet worker", description=__doc__)
    commands = parser.add_subparsers(dest="lmm_command", metavar="ACTION", required=True)
    serve = commands.add_parser("serve", help="answer the fleet's LMM requests until stopped")
    serve.add_argument("--fleet", type=Path, required=True, help="FLEET.yaml (the hub and the sites)")
    serve.add_argument(
        "--rerank",
        type=Path,
        required=True,
        help="a re-ranking config whose backend answers (rerank: section)",
    )
    parser.set_defaults(func=run, exit_at_once=True)


def run(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.config_yaml import ConfigError
    from agent.fleet.hub_config import load_fleet_config
    from agent.fleet.link import NatsLink
    from agent.fleet.lmm import LmmWorker
    from agent.rerank.backends.base import LmmError, build_backend
    from agent.rerank.config import load_rerank_config

    try:
        fleet = load_fleet_config(args.fleet)
        rerank = load_rerank_config(args.rerank)
    except ConfigError as exc:
        print(f"watchword lmm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if rerank.backend is None or rerank.backend.type == "fleet":
        print("watchword lmm: the re-ranking config needs a transformers or openai backend", file=sys.stderr)
        return EXIT_USAGE
    try:
        backend = build_backend(rerank.backend)
    except LmmError as exc:
        print(f"watchword lmm: rerank.backend: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker = LmmWorker(NatsLink(fleet.hub, "watchword-lmm-worker"), backend, fleet.site_ids)
    worker.start()
    while not worker.ready and not stop.wait(0.05):  # subscribed: requests reach it from now on
        pass
    print(f"lmm worker: {backend.name} for {len(fleet.site_ids)} sites; Ctrl-C stops", flush=True)
    try:
        stop.wait()
    finally:
        worker.close()
        backend.close()
    print(f"lmm worker: answered {worker.answered}, failed {worker.failed}")
    return EXIT_OK
