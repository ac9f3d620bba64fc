"""Parameter checks shared by the task and training dataclasses: each raises a ValueError that
names the parameter and what would work."""

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
