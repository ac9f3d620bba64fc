"""Parameter checks shared by the task and training dataclasses: each raises a ValueError that
names the parameter and what would work."""

import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def check_positive(name: str, value: int | float, minimum: int | float = 1) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_known_fields(cls: type, d: Mapping[str, Any]) -> None:
    """Raise a ValueError naming any key of ``d`` that is not a field of dataclass ``cls``."""
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")


def check_field_types(cls: type, d: Mapping[str, Any]) -> None:
    """Raise a ValueError naming the first value of ``d`` whose type does not fit its field of
    dataclass ``cls`` (an int fits a float field; a bool fits only a bool field). Fields whose
    type is not a plain scalar (or a union of them with None) are not checked, nor are names
    that are not fields."""
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        allowed = _scalar_types(hints.get(name))
        if allowed is None or any(_fits(value, t) for t in allowed):
            continue
        expected = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
        raise ValueError(
            f"{cls.__name__}.{name} must be {expected}, got {value!r} "
            f"({type(value).__name__}); pass e.g. {name}={_example(allowed)}"
        )


def _scalar_types(hint) -> tuple[type, ...] | None:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = typing.get_args(hint)
    else:
        members = (hint,)
    scalars = (bool, int, float, str, type(None))
    return members if members and all(m in scalars for m in members) else None


def _fits(value, t: type) -> bool:
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def _example(allowed: tuple[type, ...]) -> str:
    return {int: "3", float: "0.5", bool: "true", str: "text"}.get(allowed[0], "null")
