"""The Fourier spectrum of a model's embedding of a cyclic group of tokens.

Nanda et al. (2023, "Progress measures for grokking via mechanistic interpretability") reverse-
engineered the 1-layer transformer that groks modular addition: it embeds each residue ``a`` as
``cos(w a), sin(w a)`` for a few *key frequencies* ``w = 2 pi k / p`` and adds angles with
trigonometric identities. Read in the Fourier basis over the residues, its embedding matrix is
sparse: a few frequencies carry almost all of its norm. A memorizing network has no reason to be
sparse there; the generalizing one is. So the spectrum is a progress measure that needs no test
set.

:func:`fourier_spectrum` takes the embedding rows of the tokens ``0, 1, ..., p-1`` in order (a
task gives them by registering ``cyclic_tokens``; modular arithmetic does), applies the discrete
Fourier transform over the token axis, and reports the energy (squared norm, cosine and sine
together) of each frequency ``k = 1 .. p // 2``; the constant term ``k = 0`` is left out, as it
says nothing about the cyclic structure.

Two summaries, both fixed in advance rather than tuned to a run:

- ``key_frequencies``: the fewest frequencies that together hold ``coverage`` (default half) of the
  energy, largest first. A sparse spectrum needs few; a spread one needs many.
- ``gini``: the Gini coefficient of the energies, 0 when every frequency has the same energy and
  approaching 1 when one frequency has it all.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import check_task_fits
from grok_circuits.backend import Model
from grok_circuits.tasks import TaskData, task_spec

#: The share of the energy the key frequencies must hold (see the module docstring).
DEFAULT_COVERAGE = 0.5


def gini(x: Tensor) -> float:
    """The Gini coefficient of non-negative values: 0 if all are equal, (n-1)/n if one has all."""
    x = x.double().flatten().sort().values
    n = x.numel()
    if n == 0 or float(x.sum()) == 0.0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return float((2 * (ranks * x).sum() / (n * x.sum())) - (n + 1) / n)


@dataclass(frozen=True, eq=False)
class FourierSpectrum:
    """The energy of each frequency of an embedding over a cyclic group of ``p`` tokens.

    Attributes:
        p: the size of the group (number of tokens).
        frequencies: ``1 .. p // 2``.
        energy: ``[freq]`` squared norm of each frequency's cosine and sine components.
        coverage: the share of the energy the key frequencies hold at least.
        step: the training step of the checkpoint, when known.
    """

    p: int
    frequencies: tuple[int, ...]
    energy: Float[Tensor, " freq"]
    coverage: float = DEFAULT_COVERAGE
    step: int | None = None

    @property
    def share(self) -> Float[Tensor, " freq"]:
        """Each frequency's share of the total energy."""
        return self.energy / self.energy.sum().clamp(min=1e-30)

    @property
    def key_frequencies(self) -> tuple[int, ...]:
        """The fewest frequencies holding at least :attr:`coverage` of the energy, largest
        first."""
        order = torch.argsort(self.share, descending=True, stable=True)
        cumulative = torch.cumsum(self.share[order], 0)
        n = int((cumulative < self.coverage - 1e-12).sum()) + 1
        return tuple(self.frequencies[int(i)] for i in order[: min(n, len(order))])

    @property
    def gini(self) -> float:
        """The Gini coefficient of the energies (0: spread evenly, near 1: one frequency)."""
        return gini(self.energy)

    def top_share(self, k: int) -> float:
        """The share of the energy held by the ``k`` largest frequencies."""
        return float(self.share.sort(descending=True).values[:k].sum())

    def summary(self) -> dict:
        """Gini, the number of key frequencies and the share of the largest five."""
        return {
            "gini": self.gini,
            "n_key": len(self.key_frequencies),
            "top5_share": self.top_share(5),
        }

    def to_frame(self):
        """One row per frequency: energy, share, and whether it is a key frequency."""
        import pandas as pd

        key = set(self.key_frequencies)
        return pd.DataFrame(
            {
                "energy": self.energy.tolist(),
                "share": self.share.tolist(),
                "key": [f in key for f in self.frequencies],
            },
            index=pd.Index(self.frequencies, name="frequency"),
        )

    def plot(self, ax=None, *, title: str | None = None):
        """The share of the energy per frequency, key frequencies highlighted. See
        :func:`grok_circuits.viz.plot_fourier_spectrum`."""
        from grok_circuits.viz.progress import plot_fourier_spectrum

        return plot_fourier_spectrum(self, ax=ax, title=title)

    def __repr__(self) -> str:
        step = "" if self.step is None else f"step {self.step}, "
        return (
            f"FourierSpectrum({step}p={self.p}, key frequencies {list(self.key_frequencies)} "
            f"(the fewest holding >= {self.coverage:.0%}) hold "
            f"{self.top_share(len(self.key_frequencies)):.1%} of the energy, gini {self.gini:.3f}, "
            f"top-5 share {self.top_share(5):.3f})"
        )


def cyclic_token_ids(tokens: TaskData | Sequence[int]) -> list[int]:
    """The token ids of the group, in order: given, or registered by the task."""
    if isinstance(tokens, TaskData):
        spec = task_spec(tokens)
        if spec.cyclic_tokens is None:
            raise ValueError(
                f"the {tokens.name} task registers no cyclic tokens (cyclic_tokens=...); pass the "
                "token ids of the group in order instead"
            )
        return [int(t) for t in spec.cyclic_tokens(tokens)]
    return [int(t) for t in tokens]


@torch.no_grad()
def fourier_spectrum(
    model: Model,
    tokens: TaskData | Sequence[int],
    *,
    coverage: float = DEFAULT_COVERAGE,
    step: int | None = None,
) -> FourierSpectrum:
    """The Fourier spectrum of ``model``'s token embedding over a cyclic group of tokens.

    Args:
        model: any model (``HookedTransformer`` or ``TransformerBridge``).
        tokens: a task that registers ``cyclic_tokens`` (modular arithmetic: the residues
            ``0 .. p-1``; the model must have been trained on it), or the ids of the group's
            tokens in order.
        coverage: the share of the energy the key frequencies must hold, in (0, 1].
        step: the training step, for the record.

    Returns:
        A :class:`FourierSpectrum`.
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage is a share of the energy, in (0, 1]; got {coverage}")
    if isinstance(tokens, TaskData):
        check_task_fits(model, tokens)
    ids = cyclic_token_ids(tokens)
    p = len(ids)
    if p < 3:
        raise ValueError(f"a cyclic group needs at least 3 tokens for a spectrum, got {p}")
    if min(ids) < 0 or max(ids) >= model.cfg.d_vocab:
        raise ValueError(
            f"token ids {min(ids)}..{max(ids)} do not fit the model's vocabulary of "
            f"{model.cfg.d_vocab} tokens (d_vocab)"
        )
    w = model.W_E[torch.tensor(ids, device=model.W_E.device)].detach().double().cpu()
    coeffs = torch.fft.rfft(w, dim=0)  # [p // 2 + 1, d_model]: k = 0 .. p // 2
    energy = coeffs.abs().pow(2).sum(-1)[1:]
    return FourierSpectrum(
        p=p,
        frequencies=tuple(range(1, p // 2 + 1)),
        energy=energy.float(),
        coverage=coverage,
        step=step,
    )


__all__ = ["DEFAULT_COVERAGE", "FourierSpectrum", "fourier_spectrum", "gini"]
