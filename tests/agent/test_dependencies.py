"""The start-up check of installed dependencies against the ranges Watchword declares.

The end-to-end test puts a stand-in ``opencv-python 6.0.0`` distribution (a ``.dist-info`` folder,
as pip would write it) first on the path of a real ``watchword run configs/demo.yaml`` and expects
one line and exit status 2 before anything starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser, starts_the_agent
from agent.dependencies import (
    LOCKED_INSTALL,
    find_unsupported,
    installed_versions,
    parse_requirements,
    unsupported_dependency,
)

REPO = Path(__file__).resolve().parents[2]

DECLARED = [
    "numpy<3,>=1.24",
    "opencv-python<6,>=4.8",
    "PyYAML>=6",
    'onnxruntime>=1.17; extra == "cpu"',
    'torch<=2.14.1,>=2.1; extra == "export"',
    'transformers>=4.45; extra == "export"',
    'accelerate>=0.30; extra == "lmm"',
    'transformers>=4.45; extra == "lmm"',
    'tomli>=2; python_version < "3.0"',
]


def _unsupported(installed: dict[str, str]) -> list[str]:
    return [u.message() for u in find_unsupported(parse_requirements(DECLARED), installed.get)]


def _fake_distribution(root: Path, name: str, version: str) -> None:
    """A distribution's metadata as an installer writes it (no code: only the version matters)."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")


def test_everything_in_range_passes() -> None:
    installed = {"numpy": "2.4.6", "opencv-python": "4.14.0.94", "PyYAML": "6.0.4", "onnxruntime": "1.32.0"}
    assert _unsupported(installed) == []


def test_a_release_past_the_upper_bound_is_named_with_the_supported_range() -> None:
    installed = {"numpy": "2.4.6", "opencv-python": "6.0.0", "PyYAML": "6.0.4"}
    assert _unsupported(installed) == [
        "watchword: opencv-python 6.0.0 is installed, but Watchword supports opencv-python>=4.8,<6; "
        f"install the locked versions: {LOCKED_INSTALL}"
    ]


def test_below_the_lower_bound_and_a_missing_base_requirement_are_reported() -> None:
    messages = _unsupported({"numpy": "1.23.5", "opencv-python": "4.14.0.94"})
    assert [m.split(";")[0] for m in messages] == [
        "watchword: numpy 1.23.5 is installed, but Watchword supports numpy>=1.24,<3",
        "watchword: PyYAML is not installed, but Watchword needs PyYAML>=6",
    ]


def test_an_extra_is_checked_only_when_all_its_packages_are_installed() -> None:
    base = {"numpy": "2.4.6", "opencv-python": "4.14.0.94", "PyYAML": "6.0.4"}
    # lmm is not installed (no accelerate): its old transformers is not Watchword's concern ...
    assert not any("lmm" in m for m in _unsupported({**base, "transformers": "4.30.0"}))
    # ... but with torch the export extra is complete, and both its out-of-range packages count
    messages = _unsupported({**base, "transformers": "4.30.0", "torch": "2.15.0"})
    assert [m.split(" is installed")[0] for m in messages] == [
        "watchword: torch 2.15.0",
        "watchword: transformers 4.30.0",
    ]
    assert _unsupported({**base, "onnxruntime": "1.16.0"})[0].startswith("watchword: onnxruntime 1.16.0")


def test_markers_for_other_interpreters_are_dropped_and_prereleases_judged() -> None:
    rows = parse_requirements(DECLARED)
    assert "tomli" not in {row.name for row in rows}
    assert {(row.name, row.extra) for row in rows if row.name == "transformers"} == {
        ("transformers", "export"),
        ("transformers", "lmm"),
    }
    base = {"numpy": "2.4.6", "PyYAML": "6.0.4"}
    assert _unsupported({**base, "opencv-python": "5.0.0rc1"}) == []
    assert _unsupported({**base, "opencv-python": "6.0.0rc1"})  # not below 6: a 6.0 pre-release
    assert _unsupported({**base, "opencv-python": "not.a.version"}) == []  # no verdict, no refusal


def test_the_installed_versions_come_from_the_first_path_entry_that_has_the_distribution(
    tmp_path: Path,
) -> None:
    _fake_distribution(tmp_path, "opencv-python", "6.0.0")
    assert installed_versions([str(tmp_path), *sys.path])["opencv_python"] == "6.0.0"
    from importlib import metadata

    assert installed_versions()["opencv_python"] == metadata.version("opencv-python")


def test_this_installation_is_within_its_ranges_and_a_stand_in_past_them_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert unsupported_dependency() is None  # what make setup installed from the lock
    _fake_distribution(tmp_path, "opencv-python", "6.0.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = unsupported_dependency()
    assert message is not None and message.startswith("watchword: opencv-python 6.0.0 is installed")


def test_watchword_run_refuses_an_unsupported_opencv_in_one_line_with_status_2(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "opencv-python", "6.0.0")
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", str(REPO / "configs" / "demo.yaml"), "--max-frames", "1"],
        cwd=tmp_path,  # were the check to let it through, the run's state stays in tmp_path
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "watchword: opencv-python 6.0.0 is installed, but Watchword supports opencv-python>=4.8,<6; "
        f"install the locked versions: {LOCKED_INSTALL}"
    ]
    assert not (tmp_path / "data").exists()  # nothing started


@pytest.mark.parametrize(
    ("argv", "checked"),
    [
        (["run", "configs/demo.yaml"], True),
        (["eval", "replay", "--video", "day.mp4"], True),
        (["eval", "replay", "--frames", "frames.jsonl"], False),
        (["query", "list"], False),
    ],
)
def test_the_commands_that_start_the_agent_check_first(argv: list[str], checked: bool) -> None:
    assert starts_the_agent(build_parser(argv).parse_args(argv)) is checked
