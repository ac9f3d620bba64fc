"""The logit lens: what does the residual stream already "say" at each layer?

The logit lens (nostalgebraist 2020, "interpreting GPT: the logit lens") decodes an intermediate
residual-stream state as if it were the last one: through the final LayerNorm and the
unembedding. If a token ranks high in that decoding, the state already holds it in a form the
output can read. "Grokked Transformers are Implicit Reasoners" (Wang et al. 2024, section 5)
uses it to show *where* a grokked model stores the intermediate answer of a two-hop query: the
bridge entity ``b`` becomes decodable at the ``r1`` position around the middle layers, while the
``r2`` token is carried unchanged at the ``r2`` position.

Here every layer's input residual stream (``resid_pre`` of each block, row ``l`` = before block
``l``, row 0 = the embeddings) and the final ``resid_post`` (the last row, exactly what the
unembedding reads) are decoded with TransformerLens'
``ActivationCache.accumulated_resid(apply_ln=True)``, which re-normalises each state with its own
LayerNorm statistics. For each target token we report its **rank** among all ``d_vocab``
tokens (0 = top; ties count in the target's favour: the rank is the number of tokens with a
strictly larger logit) and its **reciprocal rank** ``1 / (rank + 1)``; the mean over examples is
the **MRR** (mean reciprocal rank) the paper plots.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import transformer_lens.utilities as tl_utils
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits.backend import Model

PositionsLike = int | Sequence[int] | Int[Tensor, " batch"] | Int[Tensor, "batch n_pos"]


@dataclass(frozen=True, eq=False)
class LogitLensResult:
    """The result of :func:`logit_lens`.

    Attributes:
        ranks: rank of each target (0 = top) at each layer, ``[layer, batch]`` for one position
            per example, or ``[layer, batch, n_pos]`` for several. ``layer`` has
            ``n_layers + 1`` rows: the input of each block, then the final residual stream.
        layer_labels: TransformerLens' names of the rows (``"0_pre"``, ..., ``"final_post"``).
        names: a name per ``n_pos`` column (e.g. ``"bridge@r1"``), or one name.
        positions: ``[batch, n_pos]`` positions that were decoded.
        targets: ``[batch, n_pos]`` target token ids.
    """

    ranks: Tensor
    layer_labels: tuple[str, ...]
    names: tuple[str, ...]
    positions: Tensor
    targets: Tensor

    @property
    def reciprocal_ranks(self) -> Tensor:
        """``1 / (rank + 1)``, the same shape as :attr:`ranks`."""
        return 1.0 / (self.ranks.float() + 1.0)

    @property
    def mrr(self) -> Float[Tensor, "layer ..."]:
        """Mean reciprocal rank over examples: ``[layer]`` or ``[layer, n_pos]``."""
        return self.reciprocal_ranks.mean(1)

    @property
    def top1(self) -> Float[Tensor, "layer ..."]:
        """Fraction of examples whose target is the top token at that layer."""
        return (self.ranks == 0).float().mean(1)

    @property
    def per_position(self) -> bool:
        return self.ranks.dim() == 3

    def column(self, name: str) -> "LogitLensResult":
        """The result for one named column (a ``[layer, batch]`` result)."""
        if name not in self.names:
            raise ValueError(f"no column {name!r}; the columns are {list(self.names)}")
        if not self.per_position:
            return self
        j = self.names.index(name)
        return LogitLensResult(
            self.ranks[:, :, j],
            self.layer_labels,
            (name,),
            self.positions[:, j : j + 1],
            self.targets[:, j : j + 1],
        )

    def first_layer(self, threshold: float, name: str | None = None) -> int | None:
        """The first row whose MRR reaches ``threshold`` (for column ``name``), else None."""
        mrr = self.column(name).mrr if name is not None else self.mrr
        if mrr.dim() != 1:
            raise ValueError(f"this result has columns {list(self.names)}; pass name=")
        hits = torch.nonzero(mrr >= threshold).flatten()
        return int(hits[0]) if len(hits) else None

    def summary(self) -> dict:
        """For each column: its best MRR over the layers and the row that reaches it."""
        mrr = self.mrr if self.per_position else self.mrr[:, None]
        out: dict = {"n_examples": int(self.ranks.shape[1])}
        for j, name in enumerate(self.names):
            best = int(mrr[:, j].argmax())
            out[f"best MRR {name}"] = float(mrr[best, j])
            out[f"best layer {name}"] = self.layer_labels[best]
        return out

    def to_frame(self):
        """MRR as a pandas DataFrame: layers as rows, one column per name."""
        import pandas as pd

        mrr = self.mrr if self.per_position else self.mrr[:, None]
        return pd.DataFrame(mrr.tolist(), index=list(self.layer_labels), columns=list(self.names))

    def plot(self, ax=None, *, title: str | None = None):
        """MRR per layer, one curve per column."""
        from grok_circuits.viz.analysis import plot_logit_lens

        return plot_logit_lens(self, ax=ax, title=title)

    def __repr__(self) -> str:
        n = self.ranks.shape[1]
        return f"LogitLensResult(MRR over {n} examples)\n{self.to_frame().round(3).to_string()}"


def _as_grid(
    positions: PositionsLike, targets: Tensor, n_examples: int, n_pos_tokens: int
) -> tuple[Tensor, Tensor, bool]:
    """Positions and targets as ``[batch, n]`` tensors, and whether the result has an ``n`` axis."""
    targets = torch.as_tensor(targets)
    if targets.dim() not in (1, 2) or targets.shape[0] != n_examples:
        raise ValueError(
            f"targets must be [batch] or [batch, n_pos] with batch={n_examples}, got shape "
            f"{tuple(targets.shape)}"
        )
    if isinstance(positions, int):
        pos, single_pos = torch.full((n_examples, 1), positions), True
    elif isinstance(positions, Tensor):
        if positions.dim() == 1 and positions.shape[0] == n_examples:
            pos, single_pos = positions[:, None], True
        elif positions.dim() == 2 and positions.shape[0] == n_examples:
            pos, single_pos = positions, False
        else:
            raise ValueError(
                f"a positions tensor must be [batch] or [batch, n_pos] with batch={n_examples}, "
                f"got shape {tuple(positions.shape)}; for the same positions in every example "
                "pass an int or a list of ints"
            )
    else:
        pos, single_pos = (
            torch.tensor(list(positions), dtype=torch.long)[None].expand(n_examples, -1),
            False,
        )
    pos = pos.long()
    if pos.shape[1] == 0:
        raise ValueError("positions is empty; give at least one position")
    pos = torch.where(pos < 0, pos + n_pos_tokens, pos)
    if bool(((pos < 0) | (pos >= n_pos_tokens)).any()):
        raise ValueError(
            f"positions must lie in 0..{n_pos_tokens - 1} (the prompts' length), got "
            f"{sorted(set(pos.flatten().tolist()))}"
        )
    tgt = targets.long()[:, None] if targets.dim() == 1 else targets.long()
    n = max(pos.shape[1], tgt.shape[1])
    if pos.shape[1] not in (1, n) or tgt.shape[1] not in (1, n):
        raise ValueError(
            f"{pos.shape[1]} positions per example and {tgt.shape[1]} targets per example do "
            "not match; give one of each per column, or one of either to share"
        )
    squeeze = single_pos and targets.dim() == 1
    return pos.expand(n_examples, n).clone(), tgt.expand(n_examples, n).clone(), squeeze


@torch.no_grad()
def logit_lens(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    targets: Int[Tensor, " batch"] | Int[Tensor, "batch n_pos"],
    positions: PositionsLike,
    *,
    names: Sequence[str] | None = None,
    batch_size: int = 1024,
) -> LogitLensResult:
    """Rank of ``targets`` in the logit-lens decoding of every layer at ``positions``.

    Args:
        model: a model (``HookedTransformer`` or ``TransformerBridge``).
        tokens: the prompts.
        targets: the token id to rank, per example (``[batch]``) or per example and column
            (``[batch, n_pos]``).
        positions: where to decode: an int (the same position for every example), a list of
            ints (one column each), a ``[batch]`` tensor (one position per example, e.g. the
            answer position) or a ``[batch, n_pos]`` tensor. Negative ints count from the end.
        names: a name per column, for tables and plots (default: the positions).
        batch_size: examples per forward pass.

    Returns:
        A :class:`LogitLensResult` with ``ranks`` ``[n_layers + 1, batch]`` (one position and one
        target per example) or ``[n_layers + 1, batch, n_pos]``; ``.mrr`` is their mean
        reciprocal rank per layer.
    """
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 2 or tokens.shape[0] == 0:
        raise ValueError(
            f"tokens must be a non-empty [batch, pos] tensor, got {tuple(tokens.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_examples = tokens.shape[0]
    pos, tgt, squeeze = _as_grid(positions, targets, n_examples, tokens.shape[1])
    n = pos.shape[1]
    if names is None:
        if isinstance(positions, int) or not isinstance(positions, Tensor):
            names = [str(int(p)) for p in pos[0]]
        else:
            names = ["pos"] if n == 1 else [f"pos{j}" for j in range(n)]
    names = tuple(names)
    if len(names) != n:
        raise ValueError(f"names has {len(names)} entries for {n} columns")
    tgt_bad = (tgt < 0) | (tgt >= model.cfg.d_vocab_out)
    if bool(tgt_bad.any()):
        raise ValueError(f"targets must be token ids in 0..{model.cfg.d_vocab_out - 1}")

    device = model.cfg.device
    n_layers = model.cfg.n_layers
    wanted = {tl_utils.get_act_name("resid_pre", layer) for layer in range(n_layers)}
    wanted.add(tl_utils.get_act_name("resid_post", n_layers - 1))
    chunks: list[Tensor] = []
    labels: list[str] = []  # tokens is not empty, so the loop sets them
    for i in range(0, n_examples, batch_size):
        chunk = tokens[i : i + batch_size].to(device)
        _, cache = model.run_with_cache(chunk, names_filter=lambda name: name in wanted)
        stack, labels = cache.accumulated_resid(apply_ln=True, return_labels=True)
        rows = torch.arange(chunk.shape[0], device=device)[:, None]
        states = stack[:, rows, pos[i : i + batch_size].to(device)]  # layer batch n d_model
        logits = model.unembed(states)  # layer batch n d_vocab
        t = tgt[i : i + batch_size].to(device)
        target_logit = logits.gather(-1, t[None, :, :, None].expand(logits.shape[0], -1, -1, 1))
        chunks.append((logits > target_logit).sum(-1).cpu())
        del cache, stack
    ranks = torch.cat(chunks, dim=1)
    return LogitLensResult(
        ranks=ranks[:, :, 0] if squeeze else ranks,
        layer_labels=tuple(labels),
        names=names[:1] if squeeze else names,
        positions=pos,
        targets=tgt,
    )


__all__ = ["LogitLensResult", "logit_lens"]
