"""MIB's faithfulness over the course of grokking: CPR and CMD at every checkpoint of a run.

:func:`faithfulness` scores one circuit of one model on MIB's edge-fraction grid (Mueller et al.
2025). Grokking is a change over training time, so :func:`faithfulness_over_checkpoints` asks
the same question at each checkpoint of a run, for one or several sets of pairs at once (the ID
and the OOD test queries, say), through :func:`~grok_circuits.analysis.over_checkpoints.
over_checkpoints` (one model in memory at a time)::

    sets = {
        "id": make_pairs(run.task, "r1", "test_id", n_examples=150),
        "ood": make_pairs(run.task, "r1", "test_ood"),
    }
    over = faithfulness_over_checkpoints(run, sets)
    over.cpr["id"]          # [step] CPR of the ID circuit at each checkpoint
    over.plot()             # the surfaces (step x fraction) and CPR beside the accuracy curves

**Which circuit at each checkpoint.** The edges are ranked at each checkpoint by scores computed
at that checkpoint, on the set's own pairs (``method="eap"`` by default: one forward and one
backward pass per batch, cheap enough for every checkpoint): the curve at step ``t`` is how
faithful the best circuit the attribution finds in the model *at* ``t`` is, not how faithful a
circuit found elsewhere stays. So "the OOD circuit" is the circuit EAP finds on the OOD pairs,
and its CPR says whether any small part of the graph carries what the full model does on them
(which may be a wrong answer: read CPR beside the accuracy, and beside ``full metric``, the
clean-minus-corrupt logit difference the normalisation divides by). To follow one circuit over
time, call :func:`faithfulness` on each checkpoint with an :class:`~grok_circuits.analysis.
edges.scores.EdgeCircuit` instead.

Each checkpoint's result is the :class:`~grok_circuits.analysis.edges.faithfulness.Faithfulness`
that ``faithfulness(model, pairs, edge_attribution(model, pairs, method=method), ...)`` returns
there; the random circuits are drawn with the same ``seed`` at every checkpoint.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grok_circuits.analysis._inputs import Data, as_pairs
from grok_circuits.analysis.edges.attribution import EdgeMetric, edge_attribution
from grok_circuits.analysis.edges.faithfulness import EdgeAblation, Faithfulness, faithfulness
from grok_circuits.analysis.over_checkpoints import over_checkpoints
from grok_circuits.backend import Model
from grok_circuits.runs.run import Run
from grok_circuits.tasks import PromptPairs, TaskData
from grok_circuits.tasks.registry import Facts

#: The accuracy curves drawn beside CPR: the run's key probes by their role.
_ROLES = ("train", "id", "ood")


@dataclass(frozen=True, eq=False)
class FaithfulnessOverCheckpoints:
    """MIB's faithfulness of the circuit found at each checkpoint, per set of pairs.

    Attributes:
        steps: the checkpoints measured, ascending.
        results: per set name, the :class:`Faithfulness` at each step (in ``steps``' order).
        method: the edge method that ranked the edges at each checkpoint.
        ablation: how the edges outside each circuit were ablated.
        accuracy: the run's accuracy curves by role (``"train"``, ``"id"``, ``"ood"``: the
            task's key probes), each ``(steps, values)`` at every evaluated step.
        skipped: checkpoints that could not be loaded (damaged), each warned about once.
    """

    steps: tuple[int, ...]
    results: Mapping[str, tuple[Faithfulness, ...]]
    method: str
    ablation: str
    accuracy: Mapping[str, tuple[tuple[int, ...], tuple[float, ...]]]
    skipped: tuple[int, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The sets of pairs measured, in the order given."""
        return tuple(self.results)

    @property
    def fractions(self) -> np.ndarray:
        """``[fraction]`` the x axis of every curve (MIB's grid by default)."""
        return next(iter(self.results.values()))[0].fractions

    def _per_step(self, attr: str) -> dict[str, np.ndarray]:
        return {
            name: np.array([np.mean(getattr(f, attr)) for f in rs])
            for name, rs in self.results.items()
        }

    @property
    def cpr(self) -> dict[str, np.ndarray]:
        """Per set, ``[step]`` MIB's CPR of the circuit (area under its faithfulness curve)."""
        return self._per_step("cpr")

    @property
    def cmd(self) -> dict[str, np.ndarray]:
        """Per set, ``[step]`` MIB's CMD of the circuit (area between its curve and 1)."""
        return self._per_step("cmd")

    @property
    def random_cpr(self) -> dict[str, np.ndarray]:
        """Per set, ``[step]`` the mean CPR of the random draws (the baseline)."""
        return self._per_step("random_cpr")

    def surface(self, name: str) -> np.ndarray:
        """``[step, fraction]`` the faithfulness of set ``name``'s circuit at each checkpoint
        and circuit size: the surface :meth:`plot` draws."""
        if name not in self.results:
            raise KeyError(f"no set named {name!r}; the sets are {list(self.results)}")
        return np.stack([f.faithfulness.double().numpy() for f in self.results[name]])

    def accuracy_at(self, role: str, step: int) -> float:
        """The run's ``role`` accuracy at the evaluated step nearest ``step`` (NaN if the run
        has no such probe)."""
        if role not in self.accuracy:
            return float("nan")
        xs, ys = self.accuracy[role]
        i = min(range(len(xs)), key=lambda j: (abs(xs[j] - step), xs[j]))
        return float(ys[i])

    def to_frame(self):
        """One row per set and step: CPR and CMD of the circuit, the random draws' mean and
        std of each, the full and empty graphs' metric, and the run's accuracies there."""
        import pandas as pd

        rows = []
        for name, rs in self.results.items():
            for step, f in zip(self.steps, rs):
                rows.append(
                    {
                        "set": name,
                        "step": step,
                        "cpr": f.cpr,
                        "random cpr": float(f.random_cpr.mean()),
                        "random cpr std": float(f.random_cpr.std()),
                        "cmd": f.cmd,
                        "random cmd": float(f.random_cmd.mean()),
                        "full metric": f.full_metric,
                        "empty metric": f.empty_metric,
                        **{f"{r} acc": self.accuracy_at(r, step) for r in self.accuracy},
                    }
                )
        return pd.DataFrame(rows).set_index(["set", "step"])

    def summary(self) -> dict[str, Any]:
        """The headline numbers per set: CPR and CMD at the first and the last checkpoint,
        the largest CPR and its step, the random draws' CPR at the last checkpoint."""
        out: dict[str, Any] = {
            "n_checkpoints": len(self.steps),
            "first_step": self.steps[0],
            "last_step": self.steps[-1],
            "method": self.method,
            "ablation": self.ablation,
        }
        cpr, cmd, rnd = self.cpr, self.cmd, self.random_cpr
        for name in self.results:
            best = int(np.nanargmax(cpr[name]))
            out[f"{name} cpr first"] = float(cpr[name][0])
            out[f"{name} cpr last"] = float(cpr[name][-1])
            out[f"{name} cmd first"] = float(cmd[name][0])
            out[f"{name} cmd last"] = float(cmd[name][-1])
            out[f"{name} max cpr"] = float(cpr[name][best])
            out[f"{name} step of max cpr"] = self.steps[best]
            out[f"{name} random cpr last"] = float(rnd[name][-1])
        return out

    def plot(self, ax=None, *, title: str | None = None, **options):
        """The faithfulness surface of each set (step x fraction of edges), and CPR over the
        steps with the run's train, ID and OOD accuracy curves beside it. Several panels: no
        ``ax``. See :func:`grok_circuits.viz.plot_faithfulness_over_checkpoints`.

        Returns:
            The matplotlib Figure.
        """
        if ax is not None:
            raise ValueError(
                "FaithfulnessOverCheckpoints.plot draws a surface per set and a CPR panel; call "
                "it without ax (or draw one set's Faithfulness: over.results[name][i].plot(ax))"
            )
        from grok_circuits.viz.edges import plot_faithfulness_over_checkpoints

        return plot_faithfulness_over_checkpoints(self, title=title, **options)

    def __repr__(self) -> str:
        head = (
            f"FaithfulnessOverCheckpoints({len(self.steps)} checkpoints {list(self.steps)}, "
            f"sets {list(self.results)}, {self.method} scores at each, {self.ablation} ablation)"
        )
        cols = ["cpr", "random cpr", "cmd", *(f"{r} acc" for r in self.accuracy)]
        return f"{head}\n{self.to_frame()[cols].round(3).to_string()}"


def _sets(
    run: Run,
    data: Data | Sequence[PromptPairs] | Mapping[str, PromptPairs],
    **pair_options: Any,
) -> dict[str, PromptPairs]:
    """The named sets of pairs: a mapping's names, a list's positions, a task's split."""
    named: dict[str, Data]
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("data is an empty mapping; give at least one set of pairs")
        named = dict(data)
    elif isinstance(data, TaskData):
        named = {str(pair_options["split"]): data}
    elif isinstance(data, PromptPairs):
        named = {"pairs": data}
    elif isinstance(data, Sequence) and not isinstance(data, str):
        if not data:
            raise ValueError("data is an empty list; give at least one set of pairs")
        named = {str(i): p for i, p in enumerate(data)}
    else:
        raise ValueError(
            f"data must be PromptPairs, a list or a {{name: PromptPairs}} mapping of them, or a "
            f"task, got {type(data).__name__}"
        )
    cfg = run.model_cfg
    out = {}
    for name, d in named.items():
        if isinstance(d, PromptPairs):  # pairs already: the task options do not apply
            out[str(name)] = as_pairs(cfg, d)
        else:
            out[str(name)] = as_pairs(cfg, d, **pair_options)
    return out


def _accuracy(run: Run) -> dict[str, tuple[tuple[int, ...], tuple[float, ...]]]:
    probes = run.key_probes
    out = {}
    for role in _ROLES:
        key = f"{probes.get(role)}_acc"
        rows = [m for m in run.metrics if key in m]
        if role in probes and rows:
            out[role] = (tuple(int(m["step"]) for m in rows), tuple(float(m[key]) for m in rows))
    return out


def faithfulness_over_checkpoints(
    run: Run,
    data: Data | Sequence[PromptPairs] | Mapping[str, PromptPairs],
    *,
    steps: Sequence[int] | None = None,
    method: str = "eap",
    ablation: EdgeAblation = "corrupt",
    fractions: Sequence[float] | None = None,
    n_random: int = 20,
    positions: bool = True,
    completeness: bool = False,
    metric: EdgeMetric = "logit_difference",
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = True,
) -> FaithfulnessOverCheckpoints:
    """MIB's CPR and CMD of the circuit found at each checkpoint of ``run``, per set of pairs.

    At each checkpoint and for each set, the edges are scored with
    ``edge_attribution(model, pairs, method=method)`` and the ranking is measured with
    :func:`faithfulness` (see the module docstring for why the circuit is found anew at each
    checkpoint).

    Args:
        run: a training run (:func:`grok_circuits.load_run`).
        data: the pairs, converted once: ``{name: PromptPairs}`` (e.g. ``{"id": ..., "ood":
            ...}``, one curve each), a list of PromptPairs (named ``"0"``, ``"1"``, ...),
            PromptPairs (``"pairs"``), or the run's task (pairs built with ``swap``,
            ``subtask``, ``split``, ``n_examples``, ``facts``, ``seed``, named by the split).
        steps: the checkpoints (default: all; others snap to the nearest one).
        method: the edge method that ranks the edges at each checkpoint (default ``"eap"``).
        ablation, fractions, n_random, positions, completeness, metric: as in
            :func:`faithfulness` (completeness off by default: it doubles the cost).
        seed: seeds the pairs drawn from a task, the random circuits and the resample draw.
        batch_size: pairs per forward pass.
        progress: a progress bar over the checkpoints.

    Returns:
        :class:`FaithfulnessOverCheckpoints`.
    """
    sets = _sets(
        run,
        data,
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )

    def at(model: Model) -> dict[str, Faithfulness]:
        out = {}
        for name, pairs in sets.items():
            scores = edge_attribution(
                model, pairs, method=method, metric=metric, batch_size=batch_size
            )
            out[name] = faithfulness(
                model,
                pairs,
                scores,
                fractions=fractions,
                ablation=ablation,
                n_random=n_random,
                positions=positions,
                metric=metric,
                completeness=completeness,
                seed=seed,
                batch_size=batch_size,
            )
        return out

    over = over_checkpoints(run, at, steps=steps, progress=progress, desc="faithfulness")
    return FaithfulnessOverCheckpoints(
        steps=over.steps,
        results={name: tuple(r[name] for r in over.results) for name in sets},
        method=method,
        ablation=ablation,
        accuracy=_accuracy(run),
        skipped=over.skipped,
    )


__all__ = ["FaithfulnessOverCheckpoints", "faithfulness_over_checkpoints"]
