"""The units of a node-level circuit: attention heads and MLPs, named as ``L2H1`` and ``MLP3``."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral
from typing import Literal

from transformer_lens.utilities import get_act_name

from grok_circuits.backend import Model


@dataclass(frozen=True)
class Component:
    """An attention head (``head`` set) or an MLP (``head=None``) of one layer.

    Prints as ``L2H1`` (layer 2, head 1) or ``MLP3`` (the MLP of layer 3);
    :meth:`parse` reads those strings back, and tuples ``(2, 1)`` / ``(3,)``.
    """

    layer: int
    head: int | None = None

    def __post_init__(self) -> None:
        if self.layer < 0 or (self.head is not None and self.head < 0):
            raise ValueError(f"a component's layer and head must be >= 0, got {self!r}")

    @classmethod
    def attn(cls, layer: int, head: int) -> "Component":
        """Attention head ``head`` of ``layer``."""
        return cls(layer, head)

    @classmethod
    def mlp(cls, layer: int) -> "Component":
        """The MLP of ``layer``."""
        return cls(layer, None)

    @property
    def kind(self) -> Literal["head", "mlp"]:
        return "mlp" if self.head is None else "head"

    @property
    def is_head(self) -> bool:
        return self.head is not None

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook point through which the component is read or replaced."""
        if self.head is None:
            return get_act_name("mlp_out", self.layer)
        return get_act_name("z", self.layer)

    def sort_key(self) -> tuple[int, int]:
        """Computation order: the heads of a layer (by index), then its MLP."""
        return (self.layer, self.head if self.head is not None else 1 << 30)

    def __str__(self) -> str:
        return f"MLP{self.layer}" if self.head is None else f"L{self.layer}H{self.head}"

    @classmethod
    def parse(cls, c: "Component | str | tuple[int, ...]") -> "Component":
        """A :class:`Component` from itself, ``"L2H1"``, ``"MLP3"``, ``(2, 1)`` or ``(3,)``."""
        if isinstance(c, Component):
            return c
        if isinstance(c, str):
            m = re.fullmatch(r"\s*(?:L(\d+)H(\d+)|MLP(\d+))\s*", c, flags=re.IGNORECASE)
            if m is None:
                raise ValueError(f"cannot read {c!r} as a component; write 'L2H1' or 'MLP3'")
            return cls(int(m[1]), int(m[2])) if m[1] is not None else cls(int(m[3]))
        if isinstance(c, tuple) and len(c) in (1, 2) and all(isinstance(x, Integral) for x in c):
            return cls(*(int(x) for x in c))
        raise ValueError(
            f"cannot read {c!r} as a component; use Component(layer, head), (layer, head) for "
            "a head, (layer,) for an MLP, or a string such as 'L2H1' / 'MLP3'"
        )


ComponentLike = Component | str | tuple[int, ...]


def all_components(model: Model) -> list[Component]:
    """Every attention head and every MLP of ``model``, in computation order."""
    out = []
    for layer in range(model.cfg.n_layers):
        out += [Component(layer, h) for h in range(model.cfg.n_heads)]
        if not model.cfg.attn_only:
            out.append(Component(layer))
    return out


def as_components(model: Model, components: Iterable[ComponentLike]) -> list[Component]:
    """Parse and check ``components`` against ``model``; sorted, duplicates removed."""
    out = {Component.parse(c) for c in components}
    cfg = model.cfg
    for c in out:
        if c.layer >= cfg.n_layers:
            raise ValueError(f"{c} is outside the model: it has {cfg.n_layers} layers (0..)")
        if c.head is not None and c.head >= cfg.n_heads:
            raise ValueError(f"{c} is outside the model: it has {cfg.n_heads} heads per layer")
        if c.head is None and cfg.attn_only:
            raise ValueError(f"{c}: this model is attention-only and has no MLPs")
    return sorted(out, key=Component.sort_key)
