"""What every task's parameters share: a frozen dataclass that round-trips through a plain dict,
which is how runs store them (``task.json``) and how ``make_task`` rebuilds a task."""

from dataclasses import asdict
from typing import Any, TypeVar

from grok_circuits.checks import check_known_fields

# typing.Self is Python 3.11's, and a run-time type check cannot read it on a method alone
P = TypeVar("P", bound="TaskParams")


class TaskParams:
    """Base class of the task parameter dataclasses (subclass it with
    ``@dataclass(frozen=True)``): :meth:`to_dict` and :meth:`from_dict`, which refuses a key that
    is not a field in one line, naming the known ones."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of plain values."""
        return asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses

    @classmethod
    def from_dict(cls: type[P], d: dict[str, Any]) -> P:
        """The parameters from :meth:`to_dict`'s dict."""
        check_known_fields(cls, d)
        return cls(**d)


__all__ = ["TaskParams"]
