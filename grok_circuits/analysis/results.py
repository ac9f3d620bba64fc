"""What every analysis returns: one contract for all result objects.

A result is an immutable record of what an analysis found, with three ways to read it:

- ``summary() -> dict``: its headline numbers, flat and JSON-able (what a table of runs or
  :meth:`OverCheckpoints.to_frame` puts in columns);
- ``to_frame() -> pandas.DataFrame``: every number, as a table;
- ``plot(ax=None, *, title=None, **options) -> matplotlib Figure``: the figure to look at. A
  result drawn in several panels builds its own figure and refuses an ``ax``
  (:func:`no_axes`).

Results are ``@dataclass(frozen=True, eq=False)``: they hold tensors, whose ``==`` is
elementwise, so they compare by identity. ``tests/analysis/test_results.py`` checks every
result class of :mod:`grok_circuits.analysis` against this.
"""

import math
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Result(Protocol):
    """The protocol every analysis result follows (module docstring)."""

    def summary(self) -> dict[str, Any]: ...

    def to_frame(self) -> Any: ...

    def plot(self, ax: Any = None, *, title: str | None = None, **options: Any) -> Any: ...


def no_axes(ax: Any, what: str, panels: int) -> None:
    """Refuse an ``ax`` for a figure of several panels, in one line."""
    if ax is not None:
        raise ValueError(
            f"{what}.plot draws {panels} panels in a figure of its own; call it without ax "
            "(or plot one part: each panel is a result with its own .plot(ax))"
        )


def number(x: Any) -> float:
    """A tensor or number as a float (NaN for None), for summaries."""
    if x is None:
        return math.nan
    return float(x)


__all__ = ["Result", "no_axes", "number"]
