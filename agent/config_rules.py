"""Rules every config section shares: finite numbers only, and no YAML boolean where a number goes.

Every section model derives from :class:`StrictConfigModel`; YAML goes through the one loader,
:func:`agent.config_yaml.parse_yaml_model`.

pydantic turns ``max_width: true`` into 1 and accepts ``analysis_fps: .inf``; both are typos a
config should be refused for, with the key's path, at load.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _numeric(annotation: Any) -> bool:
    """Whether a field's type is a number (int or float, maybe optional), not bool."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_numeric(a) for a in args)
    if typing.get_origin(annotation) is typing.Annotated:
        return _numeric(typing.get_args(annotation)[0])
    return False


class StrictConfigModel(BaseModel):
    """Base of config sections: unknown keys refused, frozen, finite numbers, no booleans as numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        """Hand a boolean given for a number (a field, or an item of a list or mapping of numbers) on
        as text, so that the number field itself refuses it (with its own key path and line)
        instead of reading ``true`` as 1."""
        if not isinstance(data, dict):
            return data
        fixed = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if field is not None:
                fixed[name] = _booleans_as_text(field.annotation, value)
        return fixed


def _booleans_as_text(annotation: Any, value: Any) -> Any:
    """``value`` with each boolean that stands where ``annotation`` wants a number turned to text."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}" if _numeric(annotation) else value
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _booleans_as_text(typing.get_args(annotation)[0], value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _booleans_as_text(args[0], value) if len(args) == 1 else value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(annotation) or (Any,)
        return [_booleans_as_text(item, v) for v in value]
    if origin is dict and isinstance(value, dict):
        item = typing.get_args(annotation)[-1] if typing.get_args(annotation) else Any
        return {k: _booleans_as_text(item, v) for k, v in value.items()}
    return value
