"""The ``"ablation"`` circuit method: the accuracy lost when one component alone is ablated.

Necessity on the clean prompts, with no counterfactual needed: each component is replaced, at
every position, by its mean over the same examples (``ablation="mean"``) or by its value on
another example of the same format (``"resample"``; see
:mod:`grok_circuits.analysis.patching.ablation`), and the drop of top-1 accuracy is its score.
The method reads only the pairs' clean prompts, each distinct one once (:func:`distinct_clean`),
so from a task :func:`~grok_circuits.find_circuit` draws plain examples for it instead of
counterfactual pairs.
"""

from collections.abc import Sequence

import torch

from grok_circuits.analysis.circuits.scores import Scores
from grok_circuits.analysis.components import Component
from grok_circuits.analysis.patching.ablation import Ablation, accuracy_under_ablation
from grok_circuits.backend import Model
from grok_circuits.tasks import PromptPairs, Split


def distinct_clean(pairs: Sequence[PromptPairs]) -> Split:
    """The distinct clean prompts of ``pairs`` (two pairs with one clean prompt and answer
    position are one example), in first-seen order."""
    seen: dict[tuple, int] = {}
    rows: list[tuple[int, int]] = []
    for k, p in enumerate(pairs):
        for i, (row, pos) in enumerate(zip(p.clean.tolist(), p.answer_pos.tolist())):
            key = (tuple(row), pos)
            if key not in seen:
                seen[key] = len(rows)
                rows.append((k, i))
    return Split.concat([pairs[k].clean_split().select(slice(i, i + 1)) for k, i in rows], 0)


@torch.no_grad()
def ablation_scores(
    model: Model,
    pairs: Sequence[PromptPairs],
    components: Sequence[Component],
    *,
    seed: int = 0,
    ablation: Ablation = "mean",
    batch_size: int = 1024,
) -> Scores:
    """Each component's score: the accuracy lost on the distinct clean prompts of ``pairs`` when
    it alone is ablated (at every position, with the mean of or a resample from the same
    examples; ``seed`` draws the resample)."""
    examples = distinct_clean(pairs)

    def accuracy(ablated: list[Component]) -> float:
        return accuracy_under_ablation(
            model, examples, ablated, ablation=ablation, seed=seed, batch_size=batch_size
        )

    clean = accuracy([])
    scores = {c: clean - accuracy([c]) for c in components}
    return Scores(scores, metric=f"accuracy lost ({ablation} ablation)")


__all__ = ["ablation_scores", "distinct_clean"]
