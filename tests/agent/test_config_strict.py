"""Every config section is strict: a number that is infinite, NaN or a YAML boolean is refused at
load, by the real YAML loader, with the file, line and key path of the bad key."""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from agent.config import AgentConfig, ConfigError, parse_config
from agent.config_rules import StrictConfigModel
from agent.config_yaml import annotation_members
from agent.rerank.config import load_rerank_config

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


def _document(trail: tuple[Step, ...], value: Any) -> dict[str, Any]:
    """The smallest agent config holding ``value`` at ``trail`` (tags set, cameras[0] kept usable)."""
    root: dict[str, Any] = yaml.safe_load(yaml.safe_dump(BASE))
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
