"""Which iteration resolves which hop: the logit lens of a k-hop query's entities, per iteration.

A k-hop composition query ``<e_h> <r_1> ... <r_k>`` is answered by following ``r_1`` from
``e_h`` to the first intermediate entity ``e_1``, then ``r_2`` to ``e_2``, ..., and ``r_k`` to
the answer (``meta["path"]`` of a k-hop split holds ``e_1 .. e_{k-1}``). Kohli, Parthasarathy,
Sun and Yao ("Loop, Think, & Generalize", arXiv 2604.07822, 2026) find that a recurrent-depth
transformer, which runs the same blocks again and again, resolves the hops one after the other
as it iterates, and that iterating past the answer hurts it ("overthinking"). This module
measures both with the logit lens (:mod:`grok_circuits.analysis.lens.logit_lens`):

- :func:`trace_hops` decodes the residual stream after each iteration (the output of the
  iteration's last block, ``blocks.{prelude + core*(j+1) - 1}.hook_resid_post``, read before
  any input injection of the next iteration) through the final LayerNorm (with the state's own
  statistics) and the unembedding, and ranks every hop's entity: the **iteration x hop** grid of
  mean reciprocal ranks (MRR), :attr:`HopTrace.mrr`. If hop ``j`` is resolved at iteration
  ``j``, the grid is bright on its diagonal. A model without a recurrent core is read after
  each block (iterations = layers); the coda of a recurrent model is not read.
- :attr:`HopTrace.drift` says what the top decoded token is after each iteration: the answer,
  one of the intermediate entities, or something else. Run with more iterations than the model
  answers best with (``iterations=``), it shows where the residual drifts when it overthinks.

Where the entities are read (``position``): ``"answer"`` (default) at each query's answer
position, its last token, where a recurrent model must end up holding the answer and where it
is read here after every iteration; ``"hop"`` reads entity ``e_j`` at the position of ``r_j``
(the relation that produces it) and the answer at ``r_k``, as "Grokked Transformers are
Implicit Reasoners" (Wang et al. 2024) reads the bridge at ``r1``
(:func:`~grok_circuits.analysis.paper.bridge.trace_bridge`). The drift is read at the answer
position either way.

Ranks are as in :func:`~grok_circuits.analysis.lens.logit_lens.logit_lens`: the number of
tokens with a strictly larger logit (0 = top; ties count in the target's favour), and the
reciprocal rank ``1 / (rank + 1)``.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits.analysis._inputs import Data, as_pairs
from grok_circuits.backend import Model
from grok_circuits.recurrence import Recurrence, iterations_of, recurrence_of
from grok_circuits.recurrence import iterations as run_iterations
from grok_circuits.tasks import PromptPairs, Split
from grok_circuits.tasks.registry import Facts

#: Where :func:`trace_hops` reads the entities: see the module docstring.
HOP_POSITIONS = ("answer", "hop")
#: The default MRR at which a hop counts as resolved (:meth:`HopTrace.resolved_at`), as the
#: bridge's layer in :data:`~grok_circuits.analysis.paper.bridge.BRIDGE_MRR_THRESHOLD`.
HOP_MRR_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class HopTrace:
    """The result of :func:`trace_hops`: each hop's entity ranked after each iteration.

    Attributes:
        ranks: ``[row, batch, hop]`` rank of each hop's entity (0 = top) in the logit-lens
            decoding after each iteration (row ``j``: after iteration ``j + 1``; for a model
            without a recurrent core, after block ``j``).
        top: ``[row, batch]`` the top decoded token at the answer position after each row.
        entities: ``[batch, hop]`` the entity of each hop (``e_1 .. e_{k-1}``, then the answer).
        positions: ``[batch, hop]`` where each entity was read.
        row_labels: a name per row (``"iter 1"``, ... or ``"layer 0"``, ...).
        hop_labels: a name per hop (``"e1"``, ..., ``"answer"``).
        blocks: ``[row]`` the block whose output each row reads.
        recurrent: whether the rows are iterations of a recurrent core (else blocks).
        position: ``"answer"`` or ``"hop"`` (see the module docstring).
        threshold: the MRR that defines :meth:`resolved_at`.
    """

    ranks: Tensor
    top: Tensor
    entities: Tensor
    positions: Tensor
    row_labels: tuple[str, ...]
    hop_labels: tuple[str, ...]
    blocks: tuple[int, ...]
    recurrent: bool
    position: str
    threshold: float = HOP_MRR_THRESHOLD

    @property
    def n_examples(self) -> int:
        """How many queries were traced."""
        return int(self.ranks.shape[1])

    @property
    def mrr(self) -> Float[Tensor, "row hop"]:
        """The iteration x hop grid: mean reciprocal rank of each hop's entity after each row."""
        return (1.0 / (self.ranks.float() + 1.0)).mean(1)

    @property
    def top1(self) -> Float[Tensor, "row hop"]:
        """Share of queries whose hop entity is the top decoded token, per row and hop."""
        return (self.ranks == 0).float().mean(1)

    @property
    def drift_labels(self) -> tuple[str, ...]:
        """The columns of :attr:`drift`: ``"answer"``, each intermediate entity, ``"other"``."""
        return ("answer", *self.hop_labels[:-1], "other")

    @property
    def drift(self) -> Float[Tensor, "row kind"]:
        """Share of queries whose top decoded token at the answer position is the answer, each
        intermediate entity (``e1`` ...), or none of them (``"other"``), per row: where the
        residual stream goes after each iteration. A token that is several of these (a path
        through the same entity twice) counts as the answer first, then as its earliest hop;
        the shares of a row add up to 1."""
        kinds = torch.full_like(self.top, self.entities.shape[1])  # "other"
        order = [self.entities.shape[1] - 1, *range(self.entities.shape[1] - 1)]
        for kind, hop in reversed(list(enumerate(order))):  # earlier kinds win, so set last
            kinds = torch.where(self.top == self.entities[None, :, hop], kind, kinds)
        counts = torch.nn.functional.one_hot(kinds, self.entities.shape[1] + 1)
        return counts.float().mean(1)

    @property
    def best_row(self) -> int:
        """The row whose top decoded token is most often the answer (the first of ties)."""
        return int(self.drift[:, 0].argmax())

    def resolved_at(self, hop: str, threshold: float | None = None) -> int | None:
        """The first row where ``hop``'s MRR reaches ``threshold`` (default
        :attr:`threshold`), else None."""
        if hop not in self.hop_labels:
            raise ValueError(f"no hop {hop!r}; the hops are {list(self.hop_labels)}")
        t = self.threshold if threshold is None else threshold
        hits = torch.nonzero(self.mrr[:, self.hop_labels.index(hop)] >= t).flatten()
        return int(hits[0]) if len(hits) else None

    def summary(self) -> dict:
        """Rows and hops, each hop's best MRR and the row where it first reaches
        :attr:`threshold`, the row with the most answers on top, and the share of answers on top
        there and at the last row (what overthinking costs)."""
        out: dict = {
            "n_examples": self.n_examples,
            "rows": len(self.row_labels),
            "hops": len(self.hop_labels),
            "position": self.position,
            "threshold": self.threshold,
        }
        mrr = self.mrr
        for j, hop in enumerate(self.hop_labels):
            out[f"best MRR {hop}"] = float(mrr[:, j].max())
            row = self.resolved_at(hop)
            out[f"resolved {hop} at"] = None if row is None else self.row_labels[row]
        best = self.best_row
        out["best row"] = self.row_labels[best]
        out["answer on top at best row"] = float(self.drift[best, 0])
        out["answer on top at last row"] = float(self.drift[-1, 0])
        return out

    def to_frame(self):
        """One row per iteration (or block): the MRR of each hop, then the drift shares."""
        import pandas as pd

        frame = pd.DataFrame(
            self.mrr.tolist(),
            index=list(self.row_labels),
            columns=[f"MRR {h}" for h in self.hop_labels],
        )
        for j, kind in enumerate(self.drift_labels):
            frame[f"top is {kind}"] = self.drift[:, j].tolist()
        return frame

    def plot(self, ax=None, *, title: str | None = None, drift: bool = False):
        """Heatmap of the iteration x hop MRR grid, or with ``drift=True`` of :attr:`drift`."""
        from grok_circuits.viz.analysis import plot_hop_trace

        return plot_hop_trace(self, ax=ax, title=title, drift=drift)

    def __repr__(self) -> str:
        return (
            f"HopTrace({self.n_examples} examples, {len(self.hop_labels)} hops read at the "
            f"{self.position} position)\n{self.to_frame().round(3).to_string()}"
        )


def hop_entities(pairs: PromptPairs) -> Int[Tensor, "batch hop"]:
    """Each query's entity after every hop: ``meta["path"]`` (the intermediate entities in
    order), or ``meta["bridge"]`` for two hops, then the answer."""
    if "path" in pairs.meta:
        inner = torch.as_tensor(pairs.meta["path"]).long()
        inner = inner[:, None] if inner.dim() == 1 else inner
    elif "bridge" in pairs.meta:
        inner = torch.as_tensor(pairs.meta["bridge"]).long()[:, None]
    else:
        raise ValueError(
            "trace_hops needs each query's intermediate entities: PromptPairs.meta['path'] "
            "([batch, hops - 1]) or meta['bridge'] (two hops); build the pairs from a "
            "composition task, or give meta={'path': ...}"
        )
    if inner.shape[0] != len(pairs):
        raise ValueError(f"meta['path'] has {inner.shape[0]} rows for {len(pairs)} pairs")
    return torch.cat([inner, pairs.answers[:, None]], dim=1)


def _read_positions(pairs: PromptPairs, n_hops: int, position: str) -> Tensor:
    if position not in HOP_POSITIONS:
        raise ValueError(f"position={position!r}; choose one of {HOP_POSITIONS}")
    if position == "answer":
        return pairs.answer_pos[:, None].expand(-1, n_hops).clone()
    missing = [f"r{j}" for j in range(1, n_hops + 1) if f"r{j}" not in pairs.pos_labels]
    if missing:
        raise ValueError(
            f"position='hop' reads entity j at position r{{j}}, but the pairs have no "
            f"{missing} (their labels are {list(pairs.pos_labels)}); use position='answer'"
        )
    cols = [pairs.pos_labels.index(f"r{j}") for j in range(1, n_hops + 1)]
    return torch.tensor(cols)[None].expand(len(pairs), -1).clone()


def row_blocks(model: Model) -> tuple[list[int], list[str], bool]:
    """The block each row reads (the last of each iteration the model runs now; for a plain
    model, every block), the rows' labels, and whether they are iterations."""
    spec: Recurrence | None = recurrence_of(model)
    if spec is None:
        n = model.cfg.n_layers
        return list(range(n)), [f"layer {b}" for b in range(n)], False
    n = iterations_of(model)
    blocks = [spec.layers(j, n)[-1] for j in range(n)]
    return blocks, [f"iter {j + 1}" for j in range(n)], True


def decode_after(
    model: Model, tokens: Tensor, positions: Tensor, blocks: list[int]
) -> Float[Tensor, "row batch k vocab"]:
    """The logit lens after each of ``blocks`` (their ``hook_resid_post``) at ``positions``
    (``[batch, k]``, per query): each state through the final LayerNorm, with its own
    statistics, and the unembedding. Without a coda, the row of a recurrent model's last block
    of iteration ``n`` is exactly its output when run with ``n`` iterations."""
    names = [f"blocks.{b}.hook_resid_post" for b in blocks]
    wanted = set(names)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in wanted)
    rows = torch.arange(len(tokens), device=tokens.device)
    states = torch.stack([cache[name][rows[:, None], positions] for name in names])
    del cache
    if model.cfg.normalization_type is not None:
        states = model.ln_final(states)  # each state with its own statistics
    r, b, k = states.shape[:3]
    return model.unembed(states.reshape(r * b, k, states.shape[-1])).reshape(r, b, k, -1)


@torch.no_grad()
def _trace_hops(
    model: Model, pairs: PromptPairs, position: str, threshold: float, batch_size: int
) -> HopTrace:
    entities = hop_entities(pairs)
    n_hops = entities.shape[1]
    pos = _read_positions(pairs, n_hops, position)
    blocks, labels, recurrent = row_blocks(model)
    device = model.cfg.device
    ranks, tops = [], []
    for i in range(0, len(pairs), batch_size):
        tokens = pairs.clean[i : i + batch_size].to(device)
        at = torch.cat([pos[i : i + batch_size], pairs.answer_pos[i : i + batch_size, None]], 1)
        logits = decode_after(model, tokens, at.to(device), blocks)
        r = logits.shape[0]
        target = entities[i : i + batch_size].to(device)
        t_logit = logits[:, :, :n_hops].gather(-1, target[None, :, :, None].expand(r, -1, -1, 1))
        ranks.append((logits[:, :, :n_hops] > t_logit).sum(-1).cpu())
        tops.append(logits[:, :, n_hops].argmax(-1).cpu())
    return HopTrace(
        ranks=torch.cat(ranks, dim=1),
        top=torch.cat(tops, dim=1),
        entities=entities,
        positions=pos,
        row_labels=tuple(labels),
        hop_labels=(*[f"e{j}" for j in range(1, n_hops)], "answer"),
        blocks=tuple(blocks),
        recurrent=recurrent,
        position=position,
        threshold=threshold,
    )


def trace_hops(
    model: Model,
    data: Data,
    *,
    iterations: int | None = None,
    position: str = "answer",
    threshold: float = HOP_MRR_THRESHOLD,
    batch_size: int = 1024,
    swap: str | None = None,
    subtask: str | None = None,
    split: str | Split = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> HopTrace:
    """The logit lens of each hop's entity after each iteration: the iteration x hop MRR grid,
    and what the residual stream decodes to after each iteration (:attr:`HopTrace.drift`).

    Args:
        model: any model (``HookedTransformer`` or ``TransformerBridge``); a recurrent-depth one
            (:mod:`grok_circuits.recurrence`) is read after each iteration, any other after
            each block.
        data: :class:`~grok_circuits.PromptPairs` of k-hop queries with ``meta["path"]`` (or
            ``meta["bridge"]``), or a composition task, whose pairs are drawn from ``split``
            (e.g. ``"test_ood_3hop"``) with ``swap``, ``subtask``, ``n_examples``, ``facts``
            and ``seed`` as in :func:`~grok_circuits.analysis._inputs.as_pairs` (only the clean
            prompts are read).
        iterations: run a recurrent model's core this many times (default: the count it runs
            now), e.g. more than it was trained with to see it overthink; the count is restored
            afterwards.
        position: ``"answer"`` (each entity at the answer position) or ``"hop"`` (entity
            ``e_j`` at ``r_j``, the answer at ``r_k``).
        threshold: the MRR at which a hop counts as resolved (:meth:`HopTrace.resolved_at`).
        batch_size: queries per forward pass.

    Returns:
        A :class:`HopTrace`: ``.mrr`` is ``[iteration, hop]`` (hops ``e1 .. e{k-1}``, then
        ``answer``), ``.drift`` ``[iteration, kind]``.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is an MRR, in (0, 1]; got {threshold}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pairs = as_pairs(
        model,
        data,
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    if iterations is None:
        return _trace_hops(model, pairs, position, threshold, batch_size)
    if recurrence_of(model) is None:
        raise ValueError(
            f"iterations={iterations} needs a recurrent-depth model (TrainConfig(core=...) or "
            "n_loops > 1); this one has none: leave iterations=None to read every block"
        )
    with run_iterations(model, iterations):
        return _trace_hops(model, pairs, position, threshold, batch_size)


__all__ = ["HOP_MRR_THRESHOLD", "HOP_POSITIONS", "HopTrace", "hop_entities", "trace_hops"]
