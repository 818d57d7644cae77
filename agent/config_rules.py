"""Rules every config section shares: finite numbers only, and no YAML boolean where a number goes.

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
        """Hand a boolean given for a number on as text, so that the number field itself refuses it
        (with its own key path and line) instead of reading ``true`` as 1."""
        if not isinstance(data, dict):
            return data
        fixed = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if isinstance(value, bool) and field is not None and _numeric(field.annotation):
                fixed[name] = f"boolean {str(value).lower()}"
        return fixed
