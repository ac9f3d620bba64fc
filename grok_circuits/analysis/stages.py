"""Memorizing vs generalizing: what grokking changes in the circuit.

"Grokked Transformers are Implicit Reasoners" (Wang et al. 2024, section 5.3) runs the same
causal tracing on two checkpoints of one run: one just after training accuracy saturates (the
model has *memorized* the training inferred facts but does not yet generalize to the ID test
set) and one after ID generalization (the model has *grokked*). Both fit the training data; the
difference between their traces is the circuit that grokking formed. For composition the paper
finds the link from the ``r1``-position state in the upper layers to the output going from weak
to strong, and the bridge becoming decodable at the ``r1`` position.

:func:`compare_stages` picks the two checkpoints from a run's metrics
(:attr:`~grok_circuits.Run.saturation_step`: first step with training accuracy >= 99%;
:attr:`~grok_circuits.Run.grok_step`: first step with ID accuracy >= 95%; each snapped to the
nearest checkpoint), traces both on the same examples with the same corruptions
(:func:`grok_circuits.analysis.bridge.trace_reasoning`) and returns both and their difference.
"""

import gc
import warnings
from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis.bridge import (
    BRIDGE_MRR_THRESHOLD,
    DEFAULT_SWAP,
    ReasoningTrace,
    _check,
    _trace_model,
)
from grok_circuits.analysis.counterfactuals import Facts, make_counterfactuals
from grok_circuits.runs import GROK_THRESHOLD, SATURATION_THRESHOLD, Run
from grok_circuits.tasks import Split, TaskData


@dataclass(frozen=True)
class StageComparison:
    """Traces of the memorizing and the generalizing checkpoint of one run.

    Attributes:
        memorizing: the trace at :attr:`memorizing_step` (a :class:`BridgeTrace` for
            composition).
        generalizing: the trace at :attr:`generalizing_step`.
        memorizing_step, generalizing_step: the checkpoints compared.
    """

    memorizing: ReasoningTrace
    generalizing: ReasoningTrace
    memorizing_step: int
    generalizing_step: int

    @property
    def difference(self) -> Float[Tensor, "layer pos"]:
        """Causal strength after grokking minus before, per (layer, position)."""
        return self.generalizing.strength.scores - self.memorizing.strength.scores

    @property
    def mrr_difference(self) -> Float[Tensor, "layer n_targets"]:
        """Logit-lens MRR after minus before, per layer and lens column."""
        return self.generalizing.lens.mrr - self.memorizing.lens.mrr

    @property
    def pos_labels(self) -> tuple[str, ...]:
        return self.generalizing.strength.pos_labels

    def to_frame(self):
        """The strength difference: layers as rows, positions as columns."""
        import pandas as pd

        return pd.DataFrame(
            self.difference.tolist(),
            index=[f"L{i}" for i in range(self.difference.shape[0])],
            columns=list(self.pos_labels),
        )

    def plot(self, *, title: str | None = None):
        """The paper's "change during grokking" figure: the strength at both stages and their
        difference (layer x position heatmaps), and the lens MRR at both stages."""
        from grok_circuits.viz.analysis import plot_stage_comparison

        return plot_stage_comparison(self, title=title)

    def __repr__(self) -> str:
        return (
            f"StageComparison(memorizing step {self.memorizing_step} -> generalizing step "
            f"{self.generalizing_step}, {self.generalizing.n_examples} examples, swap="
            f"{self.generalizing.swap!r})\nstrength change (generalizing - memorizing):\n"
            f"{self.to_frame().round(3).to_string()}"
        )


def _stage_step(run: Run, given: int | None, found: int | None, what: str, fix: str) -> int:
    step = given if given is not None else found
    if step is None:
        raise ValueError(f"{what}; {fix}")
    return run.nearest_step(step)


def compare_stages(
    run: Run,
    memorizing: int | None = None,
    generalizing: int | None = None,
    *,
    task: TaskData | None = None,
    n_examples: int = 300,
    split: str | Split = "train_inferred",
    swap: str | None = None,
    threshold: float = BRIDGE_MRR_THRESHOLD,
    facts: Facts = "id",
    seed: int = 0,
    batch_size: int = 2048,
) -> StageComparison:
    """Trace the memorizing and the generalizing checkpoint of ``run`` and compare them.

    Args:
        run: a training run with checkpoints.
        memorizing: the memorizing step (default ``run.saturation_step``).
        generalizing: the generalizing step (default ``run.grok_step``).
        task: the task (default ``run.task``; for a mixed run pass a sub-task view).
        n_examples, split, swap, threshold, facts, seed, batch_size: as in
            :func:`grok_circuits.analysis.bridge.trace_reasoning` (the swap defaults to ``h``
            for composition, ``e1`` for comparison).

    Raises:
        ValueError: if a step is not given and the run never reached it (e.g. never grokked).
    """
    if not run.steps:
        raise ValueError(f"run {run.path} has no checkpoint to compare")
    task = task if task is not None else run.task
    _check(task, threshold)
    mem = _stage_step(
        run,
        memorizing,
        run.saturation_step,
        f"the run never reached {SATURATION_THRESHOLD:.0%} training accuracy (no memorizing stage)",
        "pass memorizing=STEP to choose the checkpoint",
    )
    gen = _stage_step(
        run,
        generalizing,
        run.grok_step,
        f"the run never grokked (ID accuracy never reached {GROK_THRESHOLD:.0%} in "
        f"{run.last_step} steps)",
        "train longer, or pass generalizing=STEP to compare with a checkpoint of your choice",
    )
    if mem == gen:
        warnings.warn(
            f"the memorizing and generalizing stages snap to the same checkpoint (step {mem}); "
            "the difference is zero. Save checkpoints more densely or pass other steps",
            stacklevel=2,
        )
    cf = make_counterfactuals(
        task, swap or DEFAULT_SWAP[task.name], split, n_examples=n_examples, facts=facts, seed=seed
    )
    traces = []
    for step in (mem, gen):
        model = run.model(step)
        try:
            traces.append(
                _trace_model(model, task, cf, threshold=threshold, step=step, batch_size=batch_size)
            )
        finally:
            del model
            gc.collect()
    return StageComparison(traces[0], traces[1], mem, gen)


__all__ = ["StageComparison", "compare_stages"]
