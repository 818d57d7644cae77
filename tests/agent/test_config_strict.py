"""Every config section is strict: a number that is infinite, NaN or a YAML boolean is refused at
load, by the real YAML loader, with the file, line and key path of the bad key.

A deterministic walk reaches every number field of every section (through union members, lists and
maps); a property test (hypothesis) then writes several of them at once, in any spelling YAML reads
as non-finite or boolean and in block or flow layout, into the agent config and into the files a
section is read from on its own."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agent.config import AgentConfig, ConfigError, parse_config
from agent.config_rules import StrictConfigModel
from agent.config_yaml import annotation_members
from agent.fleet.hub_config import FleetFileConfig, load_fleet_config
from agent.rerank.config import load_rerank_config
from agent.tracking import load_tracker_config

BAD_NUMBERS: dict[str, Any] = {".inf": math.inf, "-.inf": -math.inf, ".nan": math.nan, "true": True}
BASE: dict[str, Any] = {"cameras": [{"id": "a", "uri": "test://"}]}

# A step into the YAML: a mapping key or a list index, and the ``type`` tag of the model found there.
Step = tuple[str | int, str | None]


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    return None if field is None else typing.get_args(field.annotation)[0]


def _numeric_paths(annotation: Any, trail: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
    """Every path from the root to a number field, through nested models, union members and lists."""
    for member in annotation_members(annotation):
        origin = typing.get_origin(member)
        if member in (int, float):
            yield trail
        elif isinstance(member, type) and issubclass(member, BaseModel):
            if trail:
                trail = (*trail[:-1], (trail[-1][0], _tag(member)))
            for name, field in member.model_fields.items():
                yield from _numeric_paths(field.annotation, (*trail, (name, None)))
        elif origin is list:
            yield from _numeric_paths(typing.get_args(member)[0], (*trail, (0, None)))
        elif origin is dict:
            yield from _numeric_paths(typing.get_args(member)[1], (*trail, ("k", None)))


def _document(trail: tuple[Step, ...], value: Any, root: dict[str, Any] | None = None) -> dict[str, Any]:
    """The smallest agent config holding ``value`` at ``trail`` (tags set, cameras[0] kept usable);
    with ``root``, ``value`` is placed into that document instead."""
    if root is None:
        root = yaml.safe_load(yaml.safe_dump(BASE))
    node: Any = root
    for i, (key, tag) in enumerate(trail):
        last = i == len(trail) - 1
        child: Any = value if last else ([] if isinstance(trail[i + 1][0], int) else {})
        if isinstance(node, list):
            while len(node) <= int(key):
                node.append(child)
            child = node[int(key)] if not last else value
            node[int(key)] = child
        else:
            existing = node.get(key)
            node[key] = value if last else (existing if existing is not None else child)
            child = node[key]
        if tag is not None:
            child["type"] = tag
        node = child
    return root


def _dotted(trail: tuple[Step, ...]) -> str:
    """The key path as the loader writes it: ``cameras[0].analysis_fps``."""
    text = ""
    for key, _ in trail:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def _test_id(trail: tuple[Step, ...]) -> str:
    """The key path with the ``type`` of each union member on it: ``detector(yolo).confidence``."""
    return "".join(
        (f"[{key}]" if isinstance(key, int) else f"{'.' if i else ''}{key}") + (f"({tag})" if tag else "")
        for i, (key, tag) in enumerate(trail)
    )


NUMERIC_PATHS = sorted(set(_numeric_paths(AgentConfig, ())), key=_test_id)


def test_the_walk_reaches_every_section() -> None:
    sections = {str(trail[0][0]) for trail in NUMERIC_PATHS}
    assert {"cameras", "tracker", "detector", "matching", "rerank", "pose", "search", "feedback"} <= sections
    assert {"queries", "alerts", "api", "output"} <= sections
    assert len(NUMERIC_PATHS) > 100


def _models(annotation: Any, seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """Every model class reachable from ``annotation``: fields, union members, list and map items."""
    for member in annotation_members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel) and member not in seen:
            seen.add(member)
            for field in member.model_fields.values():
                _models(field.annotation, seen)
        elif typing.get_origin(member) in (list, dict):
            _models(typing.get_args(member)[-1], seen)
    return seen


def test_every_section_model_derives_from_the_strict_base() -> None:
    loose = sorted(
        m.__qualname__ for m in _models(AgentConfig, set()) if not issubclass(m, StrictConfigModel)
    )
    assert loose == []


@pytest.mark.parametrize("written", list(BAD_NUMBERS))
@pytest.mark.parametrize("trail", NUMERIC_PATHS, ids=_test_id)
def test_every_number_refuses_infinities_nan_and_booleans(trail: tuple[Step, ...], written: str) -> None:
    text = yaml.safe_dump(_document(trail, BAD_NUMBERS[written]), sort_keys=False)
    key = trail[-1][0]
    wanted = f"- {written}" if isinstance(key, int) else f"{key}: {written}"
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.strip().endswith(wanted))
    with pytest.raises(ConfigError) as info:
        parse_config(text, "site.yaml", check_files=False)
    assert f"site.yaml:{line}: {_dotted(trail)}: " in str(info.value), text


@pytest.mark.parametrize(
    ("section", "written", "message"),
    [
        (
            "matching:\n  window_s: .inf\n",
            ".inf",
            "site.yaml:4: matching.window_s: Input should be a finite number",
        ),
        (
            "matching:\n  top_k: true\n",
            "true",
            "site.yaml:4: matching.top_k: Input should be a valid integer",
        ),
        (
            "rerank:\n  deadline_s: .inf\n",
            ".inf",
            "site.yaml:4: rerank.deadline_s: Input should be a finite number",
        ),
        (
            "rerank:\n  calls_per_minute: true\n",
            "true",
            "site.yaml:4: rerank.calls_per_minute: Input should be a valid number",
        ),
    ],
)
def test_the_reported_typos_stop_the_start(section: str, written: str, message: str) -> None:
    """``matching.window_s: .inf`` used to start an agent that never raised an alert."""
    with pytest.raises(ConfigError) as info:
        parse_config("cameras:\n  - {id: a, uri: 'test://'}\n" + section, "site.yaml")
    assert message in str(info.value)


def test_the_rerank_loader_refuses_them_too(tmp_path: Path) -> None:
    path = tmp_path / "rerank.yaml"
    path.write_text("deadline_s: .inf\ncalls_per_minute: true\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rerank_config(path)
    assert f"{path}:1: deadline_s: " in str(info.value)
    assert f"{path}:2: calls_per_minute: " in str(info.value)


def test_every_section_model_is_frozen() -> None:
    config = parse_config("cameras:\n  - {id: a, uri: 'test://'}\n")
    for section in (config.matching, config.rerank, config.search, config.feedback, config.alerts):
        with pytest.raises(ValueError):
            section.__setattr__(next(iter(type(section).model_fields)), None)


# --- property: any spelling, any layout, several bad keys at once ------------------------------

# Every spelling PyYAML's safe loader reads as an infinity, NaN or boolean (YAML 1.1 booleans included).
NON_FINITE = [f"{sign}.{word}" for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")]
NON_FINITE += [".nan", ".NaN", ".NAN"]
BOOLEANS = [
    word.capitalize() if case == "cap" else word.upper() if case == "up" else word
    for word in ("true", "false", "yes", "no", "on", "off")
    for case in ("low", "cap", "up")
]
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
    derandomize=True,
)


def _spelled(trails: list[tuple[Step, ...]], spellings: list[str], flow: bool) -> tuple[str, list[int]]:
    """The agent config holding ``trails``, each one's bad value written as its spelling, in block or
    flow layout, and the line each one is on."""
    document: dict[str, Any] | None = None
    for i, trail in enumerate(trails):
        document = _document(trail, f"bad{i}bad", document)
    return _write(document, spellings, flow)


def _write(document: Any, spellings: list[str], flow: bool) -> tuple[str, list[int]]:
    """``document`` as YAML with placeholder ``bad{i}bad`` replaced by ``spellings[i]``; the lines."""
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=None if flow else False, width=10**6)
    rows = text.splitlines()
    lines = [next(n for n, row in enumerate(rows, 1) if f"bad{i}bad" in row) for i in range(len(spellings))]
    for i, spelling in enumerate(spellings):
        text = text.replace(f"bad{i}bad", spelling)
    return text, lines


bad_spellings = st.sampled_from(NON_FINITE + BOOLEANS)
# One bad key per top-level section, so that two never ask for different members of one union.
several_sections = st.lists(
    st.sampled_from(NUMERIC_PATHS), min_size=1, max_size=5, unique_by=lambda t: t[0][0]
)


def test_the_spellings_are_what_yaml_reads_as_non_finite_or_boolean() -> None:
    values = [yaml.safe_load(f"v: {word}")["v"] for word in NON_FINITE + BOOLEANS]
    assert all(isinstance(v, bool) or not math.isfinite(v) for v in values)


@PROPERTY
@given(trails=several_sections, data=st.data(), flow=st.booleans())
def test_every_bad_number_of_a_document_is_named_with_its_line(
    trails: list[tuple[Step, ...]], data: st.DataObject, flow: bool
) -> None:
    """Whatever the spelling (``.Inf``, ``-.inf``, ``.NaN``, ``yes``, ``Off``...), the layout and how
    many sections hold one, the start is refused and each bad key is named: ``file:line: key.path``."""
    spellings = [data.draw(bad_spellings) for _ in trails]
    text, lines = _spelled(trails, spellings, flow)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "site.yaml", check_files=False)
    for trail, line in zip(trails, lines, strict=True):
        assert f"site.yaml:{line}: {_dotted(trail)}: " in str(info.value), text


FLEET_PATHS = sorted(set(_numeric_paths(FleetFileConfig, ())), key=_test_id)
# Each file read on its own: its loader, the section of the agent config it holds (None: a file of
# its own kind) and the paths to its numbers (from the agent config's root for a section).
SECTION_FILES: dict[str, tuple[Callable[[Path], object], str | None, list[tuple[Step, ...]]]] = {
    "rerank": (load_rerank_config, "rerank", [t for t in NUMERIC_PATHS if t[0][0] == "rerank"]),
    "tracker": (load_tracker_config, "tracker", [t for t in NUMERIC_PATHS if t[0][0] == "tracker"]),
    "FLEET": (load_fleet_config, None, FLEET_PATHS),
}


def test_the_walk_reaches_every_file_read_on_its_own() -> None:
    assert all(len(paths) >= 5 for _, _, paths in SECTION_FILES.values())
    assert {str(trail[0][0]) for trail in FLEET_PATHS} >= {"hub", "console"}


@PROPERTY
@given(
    file=st.sampled_from(sorted(SECTION_FILES)), data=st.data(), spelling=bad_spellings, flow=st.booleans()
)
def test_a_file_read_on_its_own_refuses_them_too(
    tmp_path_factory: pytest.TempPathFactory, file: str, data: st.DataObject, spelling: str, flow: bool
) -> None:
    """The files read on their own (a re-ranking config, a tracker settings file, the hub's
    FLEET.yaml) go through the same loader: the bad key is named with the file, its line and its
    path in the file."""
    load, section, paths = SECTION_FILES[file]
    trail = data.draw(st.sampled_from(paths))
    if section is None:
        document = _document(trail, "bad0bad", {})
    else:  # the section's mapping (its union tag set), and the path within it
        document, trail = _document(trail, "bad0bad")[section], trail[1:]
    text, lines = _write(document, [spelling], flow)
    path = tmp_path_factory.mktemp(file) / f"{file}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert f"{path}:{lines[0]}: {_dotted(trail)}: " in str(info.value), text
