"""How long a camera added or removed through the API takes to reach (or leave) the running agent.

Starts the agent on the sample video with the tiny random CLIP (exported into ``out/bench/clip``
once, as the tests do), then three times adds a ``test://`` camera with ``POST /cameras`` and times
until ``/health`` shows it ``running``, and removes it with ``DELETE`` and times until it is gone.
Run: ``PYTHONPATH=. python -m bench.console_cameras`` (the tests' fixtures are imported).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.agent.console.agent_fixture import running_agent, wait_for
from tests.fixtures.tiny_models import SAMPLE_VIDEO, build_tiny_clip, export_tiny_clip

CLIP = Path("out/bench/clip")


def main() -> None:
    if not (CLIP / "fp32" / "manifest.json").is_file():
        build_tiny_clip(CLIP / "src")
        export_tiny_clip(CLIP / "fp32", CLIP / "src", "fp32")
    with running_agent(Path(tempfile.mkdtemp()), CLIP / "fp32", SAMPLE_VIDEO) as agent:
        for i in range(3):
            camera = f"bench-{i}"
            started = time.monotonic()
            assert agent.request("POST", "/cameras", {"id": camera, "uri": "test://?fps=5"})[0] == 201
            wait_for(
                lambda camera=camera: agent.health()["cameras"].get(camera, {}).get("state") == "running",
                20,
                "running",
                interval_s=0.02,
            )
            running = time.monotonic()
            assert agent.request("DELETE", f"/cameras/{camera}")[0] == 204
            wait_for(
                lambda camera=camera: camera not in agent.health()["cameras"], 20, "removed", interval_s=0.02
            )
            print(
                f"add -> running {running - started:.2f} s, delete -> gone {time.monotonic() - running:.2f} s"
            )


if __name__ == "__main__":
    main()
