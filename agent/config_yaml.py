"""The one YAML loader of every config: ``${ENV_VAR}`` interpolation, then pydantic validation.

:func:`parse_yaml_model` (a model) and :func:`parse_yaml_union` (a union of models chosen by ``type``,
such as a tracker settings file) raise :class:`ConfigError`, whose message names, for each bad key, the
file and line, the YAML path (``cameras[1].uri``) and the reason. It lives here, beside the strict
base (:mod:`agent.config_rules`) and apart from the root model (:mod:`agent.config`), so that a
section's own loader (``load_rerank_config``) needs nothing of the root model that nests it.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: tuple[Any, ...], errors: list[tuple[tuple[Any, ...], str]]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, recording unset variables."""
    if isinstance(node, dict):
        return {key: _interpolate(value, (*path, key), errors) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, (*path, i), errors) for i, value in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    errors.append((path, f"environment variable {name} is not set"))
                    return ""
                return default
            return value

        return _ENV_REF.sub(replace, node)
    return node


def _format_path(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Map a pydantic error location onto the YAML data, dropping union tags pydantic inserts."""
    path: list[Any] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and node.get("type") == part:
            continue  # discriminated-union tag
        else:
            path.append(part)
            node = None
    return tuple(path)


def _line_of(root: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node along ``path``."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    child = value_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def annotation_members(annotation: Any) -> list[Any]:
    """The types an annotation allows: ``Annotated`` unwrapped, unions split, ``None`` left out."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return annotation_members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [
            m for arg in typing.get_args(annotation) if arg is not type(None) for m in annotation_members(arg)
        ]
    return [annotation]


def _model_for(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The model ``node`` (a YAML mapping) is validated as: a union's member chosen by its ``type``."""
    models = [m for m in annotation_members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) > 1 and isinstance(node, dict):
        for model in models:
            tag = model.model_fields.get("type")
            if tag is not None and node.get("type") in typing.get_args(tag.annotation):
                return model
    return models[0] if len(models) == 1 else None


def _known_keys(model: type[BaseModel], path: tuple[Any, ...], data: Any) -> list[str]:
    """The keys allowed at the mapping holding the last key of ``path`` (a YAML path into ``data``)."""
    annotation: Any = model
    node = data
    for part in path[:-1]:
        current = _model_for(annotation, node)
        if current is not None and isinstance(part, str) and part in current.model_fields:
            annotation = current.model_fields[part].annotation
        else:
            containers = [
                m for m in annotation_members(annotation) if typing.get_origin(m) in (list, dict, tuple)
            ]
            if not containers:
                return []
            annotation = typing.get_args(containers[0])[-1]
        node = node[part] if isinstance(node, dict | list) else None
    current = _model_for(annotation, node)
    return list(current.model_fields) if current is not None else []


def _unknown_key_message(model: Any, path: tuple[Any, ...], data: Any) -> str:
    """``unknown key``, with the allowed key it most resembles (``did you mean 'uri'?``)."""
    key = path[-1] if path else None
    if not isinstance(key, str):
        return "unknown key"
    close = difflib.get_close_matches(key, _known_keys(model, path, data), n=1, cutoff=0.6)
    return f"unknown key {key!r}; did you mean {close[0]!r}?" if close else f"unknown key {key!r}"


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_yaml_model(
    model: type[ModelT],
    text: str,
    source: str = "<config>",
    *,
    section: str | None = None,
    what: str = "configuration",
    context: dict[str, Any] | None = None,
) -> ModelT:
    """Validate a YAML document (or its top-level ``section``, when present) as ``model``.

    ``${VAR}`` references are expanded first. Raises :class:`ConfigError` naming, for each problem,
    the file and line, the key path and the reason. ``context`` goes to the validators.
    """
    return _parse_yaml(
        model, lambda data: model.model_validate(data, context=context), text, source, section, what
    )


def parse_yaml_union(
    annotation: Any, text: str, source: str = "<config>", *, what: str = "configuration"
) -> Any:
    """Validate a YAML document as ``annotation``, a discriminated union of models (its ``type`` picks
    one), with the errors of :func:`parse_yaml_model`."""
    return _parse_yaml(annotation, TypeAdapter(annotation).validate_python, text, source, None, what)


def _parse_yaml(
    model: Any, validate: Callable[[Any], Any], text: str, source: str, section: str | None, what: str
) -> Any:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    prefix: tuple[Any, ...] = ()
    if section is not None and isinstance(data.get(section), dict):
        data, prefix = data[section], (section,)
    problems: list[tuple[tuple[Any, ...], str]] = []
    data = _interpolate(data, prefix, problems)
    if not problems:
        try:
            return validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                message = error["msg"].removeprefix("Value error, ")
                path = _data_path(tuple(error["loc"]), data)
                if error["type"] == "extra_forbidden":
                    message = _unknown_key_message(model, path, data)
                elif error["type"] == "missing":
                    message = "required key is missing"
                problems.append(((*prefix, *path), message))
    lines = []
    for path, message in problems:
        line = _line_of(root, path)
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {_format_path(path)}: {message}")
    raise ConfigError(f"invalid {what}\n  " + "\n  ".join(lines))
