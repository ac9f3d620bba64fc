"""What a circuit method returns: a score for every component it was given.

A method may return a plain ``dict[Component, float]``. It returns :class:`Scores` (a ``dict``
too) to say more: what the scores measure (``metric``, shown by the :class:`Circuit`), and, for a
method that traces the residual stream, the traced tensors from which the causal graph is drawn.
"""

from collections.abc import Mapping

from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis.components import Component


class Scores(dict[Component, float]):
    """``{Component: score}``, higher meaning more important, with what else the method measured.

    Attributes:
        metric: what the scores measure, e.g. ``"strength"`` (None: the method's name is shown).
        state_scores: ``[swap, layer, pos]`` score of each ``resid_pre`` state, or None.
        head_scores: ``[swap, layer, head]`` score of each head's ``hook_z``, or None.
        mlp_scores: ``[swap, layer, pos]`` score of each MLP output at each position, or None.
    """

    def __init__(
        self,
        scores: Mapping[Component, float],
        *,
        metric: str | None = None,
        state_scores: Float[Tensor, "swap layer pos"] | None = None,
        head_scores: Float[Tensor, "swap layer head"] | None = None,
        mlp_scores: Float[Tensor, "swap layer pos"] | None = None,
    ) -> None:
        super().__init__(scores)
        self.metric = metric
        self.state_scores = state_scores
        self.head_scores = head_scores
        self.mlp_scores = mlp_scores


__all__ = ["Scores"]
