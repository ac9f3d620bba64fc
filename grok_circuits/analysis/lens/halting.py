"""Adaptive halting: how many iterations a recurrent-depth model should run, query by query.

A recurrent-depth model (:mod:`grok_circuits.recurrence`) can run its core any number of times
at inference. Too few iterations leave a hop unresolved; too many can move the answer away
again ("overthinking", Kohli et al., arXiv 2604.07822, 2026). Their remedy, as Geiping et al.
("Scaling up Test-Time Compute with Latent Reasoning", 2025) exit, is to stop iterating where
the answer's distribution has stopped changing: after iteration ``n``, compare the output
distribution ``p_n`` with the previous one, and halt at the first ``n`` where
``KL(p_n || p_{n-1})`` falls below a threshold (optionally also asking for the entropy of
``p_n`` to be low); a query that never settles runs the largest count.

:func:`adaptive_halting` measures that rule on a set of queries. It runs the model once with
``max_iterations`` and reads its output after every iteration: without a coda, the output a
model run with ``n`` iterations gives is the final LayerNorm and unembedding of the stream after
iteration ``n`` (:func:`~grok_circuits.analysis.lens.hops.decode_after`, what
:func:`~grok_circuits.analysis.lens.hops.trace_hops` reads), so one pass
gives every count exactly; with a coda, the model is run once per count. The result,
:class:`Halting`, holds every count's prediction, so the accuracy at each *fixed* count (the
overthinking curve) sits beside the adaptive one, and :meth:`Halting.with_threshold` re-applies
the rule at other thresholds without running the model again.
"""

import math
from dataclasses import dataclass, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits.analysis._inputs import check_fits, check_split_fits, check_task_fits
from grok_circuits.analysis.lens.hops import decode_after, row_blocks
from grok_circuits.backend import Model
from grok_circuits.recurrence import Recurrence, recurrence_of
from grok_circuits.recurrence import iterations as run_iterations
from grok_circuits.tasks import PromptPairs, Split, TaskData

#: The default KL threshold (nats), the exit criterion's value in Geiping et al. (2025).
HALT_KL_THRESHOLD = 5e-4


@dataclass(frozen=True, eq=False)
class Halting:
    """The result of :func:`adaptive_halting`.

    Attributes:
        predictions: ``[count, batch]`` the top token after each iteration (row ``i``: after
            ``i + 1`` iterations).
        kl: ``[count, batch]`` ``KL(p_n || p_{n-1})`` in nats after each iteration (row 0 is
            NaN: there is nothing to compare the first iteration with).
        entropy: ``[count, batch]`` the entropy of ``p_n`` in nats.
        answers: ``[batch]`` the right answers.
        kl_threshold: halt once the KL falls below this.
        entropy_threshold: if set, halting also needs the entropy below this.
        min_iterations: no query halts before this count (at least 2).
    """

    predictions: Int[Tensor, "count batch"]
    kl: Float[Tensor, "count batch"]
    entropy: Float[Tensor, "count batch"]
    answers: Int[Tensor, " batch"]
    kl_threshold: float = HALT_KL_THRESHOLD
    entropy_threshold: float | None = None
    min_iterations: int = 2

    @property
    def max_iterations(self) -> int:
        """The largest count run (a query that never settles halts here)."""
        return int(self.predictions.shape[0])

    @property
    def n_examples(self) -> int:
        """How many queries were run."""
        return int(self.predictions.shape[1])

    @property
    def counts(self) -> Int[Tensor, " batch"]:
        """Each query's halting count: the first ``n >= min_iterations`` whose KL (and, if
        set, entropy) is below the threshold, else :attr:`max_iterations`."""
        settled = self.kl < self.kl_threshold  # NaN (row 0) compares False
        if self.entropy_threshold is not None:
            settled &= self.entropy < self.entropy_threshold
        settled[: self.min_iterations - 1] = False
        settled[-1] = True  # the last count always halts
        return settled.float().argmax(0) + 1  # argmax: the first True

    @property
    def halted_predictions(self) -> Int[Tensor, " batch"]:
        """Each query's answer at its halting count."""
        return self.predictions.gather(0, (self.counts - 1)[None]).squeeze(0)

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy with each query halted at its own count."""
        return float((self.halted_predictions == self.answers).float().mean())

    @property
    def mean_iterations(self) -> float:
        """The mean halting count: the compute adaptive halting spends, in iterations."""
        return float(self.counts.float().mean())

    @property
    def fixed_accuracy(self) -> Float[Tensor, " count"]:
        """Accuracy with every query run ``n`` iterations, for each ``n`` (the overthinking
        curve)."""
        return (self.predictions == self.answers[None]).float().mean(1)

    @property
    def best_fixed(self) -> tuple[int, float]:
        """The fixed count with the highest accuracy (the first of ties), and that accuracy:
        the oracle a fixed count could at best reach on these queries."""
        acc = self.fixed_accuracy
        n = int(acc.argmax())
        return n + 1, float(acc[n])

    @property
    def halt_share(self) -> Float[Tensor, " count"]:
        """The share of queries halting at each count."""
        return torch.bincount(self.counts - 1, minlength=self.max_iterations).float() / max(
            self.n_examples, 1
        )

    def with_threshold(
        self,
        kl_threshold: float | None = None,
        entropy_threshold: float | None = None,
        min_iterations: int | None = None,
    ) -> "Halting":
        """The same queries halted by another rule, without running the model again
        (``None`` keeps a field; to drop the entropy condition, pass ``math.inf``)."""
        kl = self.kl_threshold if kl_threshold is None else kl_threshold
        ent = self.entropy_threshold if entropy_threshold is None else entropy_threshold
        low = self.min_iterations if min_iterations is None else min_iterations
        _check_rule(kl, ent, low, self.max_iterations)
        return replace(self, kl_threshold=kl, entropy_threshold=ent, min_iterations=low)

    def summary(self) -> dict:
        """Adaptive accuracy and mean count, the best fixed count's, and the last count's."""
        best_n, best_acc = self.best_fixed
        return {
            "n_examples": self.n_examples,
            "kl_threshold": self.kl_threshold,
            "entropy_threshold": self.entropy_threshold,
            "adaptive accuracy": self.accuracy,
            "mean iterations": self.mean_iterations,
            "best fixed count": best_n,
            "best fixed accuracy": best_acc,
            f"accuracy at {self.max_iterations}": float(self.fixed_accuracy[-1]),
        }

    def to_frame(self):
        """One row per count: the fixed-count accuracy, the share of queries halting there,
        and the median KL from the previous count."""
        import pandas as pd

        return pd.DataFrame(
            {
                "fixed accuracy": self.fixed_accuracy.tolist(),
                "halts here": self.halt_share.tolist(),
                "median KL": self.kl.nanmedian(1).values.tolist(),
            },
            index=pd.Index(range(1, self.max_iterations + 1), name="iterations"),
        )

    def plot(self, ax=None, *, title: str | None = None):
        """The fixed-count accuracy curve, the adaptive rule's accuracy at its mean count, and
        the share of queries halting at each count."""
        from grok_circuits.viz.analysis import plot_halting

        return plot_halting(self, ax=ax, title=title)

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"Halting({self.n_examples} queries, KL < {self.kl_threshold:g}: accuracy "
            f"{s['adaptive accuracy']:.3f} at {s['mean iterations']:.2f} iterations on average; "
            f"best fixed count {s['best fixed count']} ({s['best fixed accuracy']:.3f}))\n"
            f"{self.to_frame().round(4).to_string()}"
        )


def _check_rule(kl: float, entropy: float | None, low: int, high: int) -> None:
    if not kl > 0:
        raise ValueError(f"kl_threshold must be > 0 (nats), got {kl}")
    if entropy is not None and not entropy > 0:
        raise ValueError(f"entropy_threshold must be > 0 (nats) or None, got {entropy}")
    if not 2 <= low <= high:
        raise ValueError(
            f"min_iterations must be between 2 (the first count with a previous one to compare "
            f"with) and max_iterations ({high}), got {low}"
        )


def _examples(model: Model, data, split: str, n_examples: int | None, seed: int) -> Split:
    if isinstance(data, Split):
        s = data
    elif isinstance(data, PromptPairs):
        s = Split(check_fits(model, data).clean, data.answer_pos, data.answers)
    elif isinstance(data, TaskData):
        if split not in check_task_fits(model, data).splits:
            raise ValueError(
                f"the {data.name} task has no split {split!r}; its splits are {sorted(data.splits)}"
            )
        s = data.splits[split]
    else:
        raise ValueError(f"expected a Split, PromptPairs or a task, got {type(data).__name__}")
    if not len(s):
        raise ValueError("no queries to halt on: the split is empty")
    if n_examples is not None and n_examples < len(s):
        s = s.sample(n_examples, seed=seed)
    return check_split_fits(model, s)


@torch.no_grad()
def _log_probs(model: Model, s: Split, spec: Recurrence, n: int, batch_size: int) -> Tensor:
    """``[count, batch, vocab]`` log-probabilities at the answer position after each of
    ``1 .. n`` iterations."""
    device = model.cfg.device
    out = []
    for i in range(0, len(s), batch_size):
        tokens = s.tokens[i : i + batch_size].to(device)
        rows = torch.arange(len(tokens), device=device)
        pos = s.answer_pos[i : i + batch_size].to(device)
        if spec.coda:  # the coda changes the output: run the model at each count
            per = []
            for m in range(1, n + 1):
                with run_iterations(model, m):
                    per.append(model(tokens)[rows, pos])
            logits = torch.stack(per)
        else:
            with run_iterations(model, n):
                logits = decode_after(model, tokens, pos[:, None], row_blocks(model)[0])[:, :, 0]
        out.append(torch.log_softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out, dim=1)


def adaptive_halting(
    model: Model,
    data: "Split | PromptPairs | TaskData",
    *,
    max_iterations: int = 12,
    kl_threshold: float = HALT_KL_THRESHOLD,
    entropy_threshold: float | None = None,
    min_iterations: int = 2,
    split: str = "test_id",
    n_examples: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> Halting:
    """Halt each query where its answer's distribution stops changing, and compare with every
    fixed count.

    Args:
        model: a recurrent-depth model (``TrainConfig(core=...)`` or ``n_loops > 1``); its
            iteration count is restored afterwards.
        data: a :class:`~grok_circuits.tasks.Split`, :class:`~grok_circuits.PromptPairs` (their
            clean prompts) or a task, whose ``split`` is used (e.g. ``"test_id_3hop"``).
        max_iterations: the largest count run; a query that never settles halts there.
        kl_threshold: halt at the first count ``n`` whose ``KL(p_n || p_{n-1})`` (nats) is
            below this.
        entropy_threshold: if set, also require the entropy of ``p_n`` (nats) below this.
        min_iterations: no query halts before this count (>= 2).
        n_examples: use a sample of this many queries (default: all).
        seed: the sample's seed.
        batch_size: queries per forward pass.

    Returns:
        A :class:`Halting`: ``.accuracy`` and ``.mean_iterations`` under the rule,
        ``.fixed_accuracy`` at every count, ``.with_threshold(...)`` for other rules.
    """
    spec = recurrence_of(model)
    if spec is None:
        raise ValueError(
            "adaptive_halting needs a recurrent-depth model (TrainConfig(core=...) or "
            "n_loops > 1); this one runs each block once, so there is no count to choose"
        )
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
        raise ValueError(f"max_iterations must be an integer, got {max_iterations!r}")
    _check_rule(kl_threshold, entropy_threshold, min_iterations, max_iterations)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    s = _examples(model, data, split, n_examples, seed)
    logp = _log_probs(model, s, spec, max_iterations, batch_size)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    kl = torch.full_like(entropy, math.nan)
    kl[1:] = (p[1:] * (logp[1:] - logp[:-1])).sum(-1).clamp_min(0.0)
    return Halting(
        predictions=logp.argmax(-1),
        kl=kl,
        entropy=entropy,
        answers=s.answers.clone(),
        kl_threshold=kl_threshold,
        entropy_threshold=entropy_threshold,
        min_iterations=min_iterations,
    )


__all__ = ["HALT_KL_THRESHOLD", "Halting", "adaptive_halting"]
