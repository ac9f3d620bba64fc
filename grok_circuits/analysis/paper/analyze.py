"""One call for the standard analyses of a run, chosen by what its task registered.

:func:`analyze` is what ``grok-circuits analyze RUN`` prints and plots. It never asks for a task's
name; it reads the task's registration (:mod:`grok_circuits.tasks.registry`):

- a task made of two (its ``subtasks``; the mixed task): :func:`~grok_circuits.circuit_reuse` of
  the two at the last checkpoint;
- a task with swaps: :func:`~grok_circuits.trace_reasoning` at the memorizing and the
  generalizing checkpoint, :func:`~grok_circuits.compare_stages` of the two, and
  :func:`~grok_circuits.find_circuit` at the last checkpoint;
- a task with ``cyclic_tokens`` (modular arithmetic): the embedding's
  :func:`~grok_circuits.fourier_spectrum` at every checkpoint.

Stages are the first checkpoints at or after the run's memorizing step (training accuracy >= 99%)
and generalizing step (ID accuracy >= 95%); a stage the run never reached is said, not guessed.
"""

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grok_circuits.analysis.circuits.find import find_circuit
from grok_circuits.analysis.circuits.reuse import circuit_reuse
from grok_circuits.analysis.lens.fourier import fourier_spectrum
from grok_circuits.analysis.over_checkpoints import over_checkpoints
from grok_circuits.analysis.paper.bridge import trace_reasoning
from grok_circuits.analysis.paper.stages import compare_stages, stage_step
from grok_circuits.runs.run import Run
from grok_circuits.tasks import subtasks, task_spec


@dataclass(frozen=True, eq=False)
class Analysis:
    """What :func:`analyze` found on a run.

    Attributes:
        run: the run's folder.
        task: the task's name.
        steps: the checkpoints used: ``memorizing``, ``generalizing`` (None if never reached)
            and ``last``.
        results: each analysis' result by name (``trace_memorizing``, ``trace_generalizing``,
            ``stages``, ``circuit``, ``reuse``, ``fourier``), in the order they ran.
        notes: what could not be run, and why.
    """

    run: Path
    task: str
    steps: dict[str, int | None]
    results: dict[str, Any]
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, Any]:
        """Each result's ``.plot()``, by name; the circuit and the reuse report, found at the
        last checkpoint, say its step in their titles."""
        out = {}
        for name, result in self.results.items():
            if name == "fourier":
                last = dataclasses.replace(result.results[-1], step=result.steps[-1])
                out["fourier_last"] = last.plot()
                out["fourier_over_steps"] = result.plot(
                    get=lambda s: s.gini,
                    title="how sparse the embedding is in the Fourier basis, over training",
                    label="Gini of the energy per frequency",
                )
            elif name in ("circuit", "reuse"):
                out[name] = result.plot(step=self.steps["last"])
            else:
                out[name] = result.plot()
        return out

    def _rows(self) -> list[tuple[str, str, Any]]:
        """(result, name, value): the run's task and steps, then each result's summary."""
        rows: list[tuple[str, str, Any]] = [("run", "task", self.task)]
        rows += [("run", f"{k} step", v) for k, v in self.steps.items()]
        for name, result in self.results.items():
            rows += [(name, k, v) for k, v in result.summary().items()]
        return rows

    def summary(self) -> dict:
        """The task, the checkpoints used, and each result's summary, its keys prefixed with
        the result's name (``"circuit: n_components"``)."""
        return {
            (key if result == "run" else f"{result}: {key}"): v for result, key, v in self._rows()
        }

    def to_frame(self):
        """:meth:`summary` as a table: one row per (result, number)."""
        import pandas as pd

        frame = pd.DataFrame(self._rows(), columns=["result", "name", "value"])
        return frame.set_index(["result", "name"])

    def plot(self, ax=None, *, title: str | None = None, name: str | None = None):
        """The figure of one result, ``name`` (default: the first); :meth:`figures` draws all.
        ``ax`` goes to results drawn in one panel."""
        if not self.results:
            raise ValueError("this analysis has no result to plot; see its notes")
        name = next(iter(self.results)) if name is None else name
        if name not in self.results:
            raise ValueError(f"no result {name!r}; the results are {list(self.results)}")
        return self.results[name].plot(ax, title=title)

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write every figure as ``folder/<name>.png``; returns the paths."""
        from grok_circuits.viz.training import save_figure

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, fig in self.figures().items():
            path = folder / f"{name}.png"
            save_figure(getattr(fig, "figure", fig), path)
            paths.append(path)
        return paths

    def __str__(self) -> str:
        lines = [
            f"run {self.run}: {self.task}; memorizing (train >= 99%) checkpoint "
            f"{self.steps['memorizing']}, generalizing (ID >= 95%) checkpoint "
            f"{self.steps['generalizing']}, last {self.steps['last']}"
        ]
        lines += [f"note: {n}" for n in self.notes]
        for name, result in self.results.items():
            lines += ["", f"[{name}]", str(result)]
        return "\n".join(lines)

    __repr__ = __str__


def analyze(run: Run, *, n_examples: int = 300, top_k: int = 6, progress: bool = False) -> Analysis:
    """The standard analyses of ``run``, as its task registered them (module docstring).

    Args:
        run: a training run (:func:`grok_circuits.load_run`).
        n_examples: examples per trace and per swap (the paper: 300).
        top_k: components per circuit.
        progress: progress bars for the analyses over checkpoints.

    Returns:
        An :class:`Analysis`; ``print`` it, or ``.save(folder)`` its figures.
    """
    if not run.steps:
        raise ValueError(f"run {run.path} has no checkpoint to analyse")
    task = run.task
    spec = task_spec(task)
    steps = {
        "memorizing": stage_step(run, run.saturation_step),
        "generalizing": stage_step(run, run.grok_step),
        "last": run.steps[-1],
    }
    results: dict[str, Any] = {}
    notes = []
    views = subtasks(task)
    if len(views) == 2:
        results["reuse"] = circuit_reuse(run.model(), task, top_k=top_k, n_examples=n_examples)
    elif spec.swaps:
        mem, gen = steps["memorizing"], steps["generalizing"]
        if mem is not None and gen is not None:
            # compare_stages traces both checkpoints; its traces are the stage traces
            stages = compare_stages(run, memorizing=mem, generalizing=gen, n_examples=n_examples)
            results["trace_memorizing"] = stages.memorizing
            results["trace_generalizing"] = stages.generalizing
            results["stages"] = stages
        for stage, step in (("memorizing", mem), ("generalizing", gen)):
            if step is None:
                notes.append(f"the run never reached its {stage} stage")
            elif mem is None or gen is None:
                trace = trace_reasoning(run.model(step), task, n_examples=n_examples)
                results[f"trace_{stage}"] = dataclasses.replace(trace, step=step)
        results["circuit"] = find_circuit(run.model(), task, n_examples=n_examples, top_k=top_k)
    else:
        notes.append(f"the {task.name} task registers no swaps: no traces or circuits")
    if spec.cyclic_tokens is not None:
        results["fourier"] = over_checkpoints(
            run, lambda m: fourier_spectrum(m, task), progress=progress, desc="Fourier spectrum"
        )
    return Analysis(run.path, task.name, steps, results, tuple(notes))


__all__ = ["Analysis", "analyze"]
