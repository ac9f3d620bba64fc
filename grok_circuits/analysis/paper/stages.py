"""Memorizing vs generalizing: what grokking changes in the circuit.

"Grokked Transformers are Implicit Reasoners" (Wang et al. 2024, section 5.3) runs the same
causal tracing on two checkpoints of one run: one just after training accuracy saturates (the
model has *memorized* the training inferred facts but does not yet generalize to the ID test
set) and one after ID generalization (the model has *grokked*). Both fit the training data; the
difference between their traces is the circuit that grokking formed. For composition the paper
finds the link from the ``r1``-position state in the upper layers to the output going from weak
to strong, and the bridge becoming decodable at the ``r1`` position.

:func:`compare_stages` picks the two checkpoints from a run's metrics
(:attr:`~grok_circuits.runs.Run.saturation_step`: first step with training accuracy >= 99%;
:attr:`~grok_circuits.runs.Run.grok_step`: first step with ID accuracy >= 95%; each the first
checkpoint at or after that step, so that the checkpoint has reached it), traces both on the same
pairs (:func:`grok_circuits.analysis.paper.bridge.trace_reasoning`) and returns both and their
difference. The pairs are any :class:`~grok_circuits.PromptPairs`; by default the run's task
builds them with its default swap.
"""

import bisect
import dataclasses
import warnings
from dataclasses import dataclass
from typing import overload

from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import Data, as_pairs
from grok_circuits.analysis.metrics import PairMetric
from grok_circuits.analysis.over_checkpoints import over_checkpoints
from grok_circuits.analysis.paper.bridge import (
    BRIDGE_MRR_THRESHOLD,
    ReasoningTrace,
    trace_reasoning,
)
from grok_circuits.analysis.results import no_axes
from grok_circuits.runs.run import GROK_THRESHOLD, SATURATION_THRESHOLD, Run
from grok_circuits.tasks import Split
from grok_circuits.tasks.registry import Facts


@dataclass(frozen=True, eq=False)
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
        """The trace's score (the metric both traces name) after grokking minus before, per
        (layer, position)."""
        return self.generalizing.strength.scores - self.memorizing.strength.scores

    @property
    def mrr_difference(self) -> Float[Tensor, "layer n_targets"]:
        """Logit-lens MRR after minus before, per layer and lens column."""
        return self.generalizing.lens.mrr - self.memorizing.lens.mrr

    @property
    def pos_labels(self) -> tuple[str, ...]:
        return self.generalizing.strength.pos_labels

    def summary(self) -> dict:
        """The two steps, and the state whose score rose most and fell most between them."""
        d = self.difference
        rise, fall = int(d.argmax()), int(d.argmin())
        n_pos = d.shape[1]

        def at(i: int) -> str:
            return f"L{i // n_pos} {self.pos_labels[i % n_pos]}"

        return {
            "memorizing_step": self.memorizing_step,
            "generalizing_step": self.generalizing_step,
            "largest rise": float(d.flatten()[rise]),
            "largest rise at": at(rise),
            "largest fall": float(d.flatten()[fall]),
            "largest fall at": at(fall),
        }

    def to_frame(self):
        """The score difference: layers as rows, positions as columns."""
        import pandas as pd

        return pd.DataFrame(
            self.difference.tolist(),
            index=[f"L{i}" for i in range(self.difference.shape[0])],
            columns=list(self.pos_labels),
        )

    def plot(self, ax=None, *, title: str | None = None):
        """The paper's "change during grokking" figure: the score at both stages and their
        difference (layer x position heatmaps), and the lens MRR at both stages (several
        panels: no ``ax``)."""
        from grok_circuits.viz.analysis import plot_stage_comparison

        no_axes(ax, "StageComparison", 4)
        return plot_stage_comparison(self, title=title)

    def __repr__(self) -> str:
        return (
            f"StageComparison(memorizing step {self.memorizing_step} -> generalizing step "
            f"{self.generalizing_step}, {self.generalizing.n_examples} examples, swap="
            f"{self.generalizing.swap!r})\n{self.generalizing.strength.score_name} change "
            "(generalizing - memorizing):\n"
            f"{self.to_frame().round(3).to_string()}"
        )


@overload
def stage_step(run: Run, reached: int) -> int: ...
@overload
def stage_step(run: Run, reached: None) -> None: ...
def stage_step(run: Run, reached: int | None) -> int | None:
    """The first checkpoint at or after step ``reached`` (the first that has reached it); the
    last checkpoint, with a warning, when none is that late; None when ``reached`` is None."""
    if reached is None:
        return None
    steps = run.steps
    i = bisect.bisect_left(steps, reached)
    if i == len(steps):
        warnings.warn(
            f"no checkpoint at or after step {reached} in {run.path}; using the last, {steps[-1]}",
            stacklevel=3,
        )
        return steps[-1]
    return steps[i]


def _stage(run: Run, given: int | None, found: int | None, what: str, fix: str) -> int:
    if given is not None:
        return run.nearest_step(given)
    if found is None:
        raise ValueError(f"{what}; {fix}")
    return stage_step(run, found)


def compare_stages(
    run: Run,
    data: Data | None = None,
    *,
    memorizing: int | None = None,
    generalizing: int | None = None,
    metric: PairMetric = "strength",
    threshold: float = BRIDGE_MRR_THRESHOLD,
    batch_size: int = 2048,
    swap: str | None = None,
    subtask: str | None = None,
    split: str | Split = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> StageComparison:
    """Trace the memorizing and the generalizing checkpoint of ``run`` and compare them.

    Args:
        run: a training run with checkpoints.
        data: the :class:`~grok_circuits.PromptPairs` to trace at both stages, or a task
            (default: ``run.task``) whose pairs are built with ``swap``, ``subtask``,
            ``split``, ``n_examples``, ``facts`` and ``seed``, as everywhere (see
            :func:`~grok_circuits.analysis._inputs.as_pairs`).
        memorizing: the memorizing step (default: the first checkpoint at or after
            ``run.saturation_step``); a step you give snaps to the nearest checkpoint.
        generalizing: the generalizing step (default: the first checkpoint at or after
            ``run.grok_step``).
        metric, threshold, batch_size: as in :func:`~grok_circuits.trace_reasoning`.

    Raises:
        ValueError: if a step is not given and the run never reached it (e.g. never grokked).
    """
    if isinstance(data, int):
        raise ValueError(
            "compare_stages(run, data): the second argument is the data; pass the steps as "
            "memorizing=STEP, generalizing=STEP"
        )
    if not run.steps:
        raise ValueError(f"run {run.path} has no checkpoint to compare")
    mem = _stage(
        run,
        memorizing,
        run.saturation_step,
        f"the run never reached {SATURATION_THRESHOLD:.0%} training accuracy (no memorizing stage)",
        "pass memorizing=STEP to choose the checkpoint",
    )
    gen = _stage(
        run,
        generalizing,
        run.grok_step,
        f"the run never grokked (ID accuracy never reached {GROK_THRESHOLD:.0%} in "
        f"{run.last_step} steps)",
        "train longer, or pass generalizing=STEP to compare with a checkpoint of your choice",
    )
    if mem == gen:
        warnings.warn(
            f"the memorizing and generalizing stages fall on the same checkpoint (step {mem}); "
            "the difference is zero. Save checkpoints more densely or pass other steps",
            stacklevel=2,
        )
    checked = as_pairs(
        run.model_cfg,
        run.task if data is None else data,
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    traces = over_checkpoints(
        run,
        lambda m: trace_reasoning(
            m, checked, metric=metric, threshold=threshold, batch_size=batch_size
        ),
        steps=sorted({mem, gen}),
        progress=False,
    )
    if len(traces) < len({mem, gen}):
        raise ValueError(f"checkpoint {sorted(set(traces.skipped))} of {run.path} is damaged")
    first, second = (dataclasses.replace(traces[s], step=s) for s in (mem, gen))
    return StageComparison(first, second, mem, gen)


__all__ = ["StageComparison", "compare_stages"]
