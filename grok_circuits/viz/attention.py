"""Attention patterns of a model on one of its task's prompts, drawn with CircuitsVis.

Causal tracing says *which* states carry the answer; attention patterns show *how* information
moves between positions: in a grokked composition model, the ``r2`` (answer) position should
read the bridge entity from the ``r1`` position in the upper layers. CircuitsVis
(``circuitsvis.attention.attention_heads``) draws one interactive ``[dest, src]`` grid per head,
with the prompt's own tokens (``<e_17> <r_3> <r_5>``) on the axes.

The patterns are read with ``run_with_cache(names_filter=...)``, which caches only the
``hook_pattern`` of the layers asked for and leaves no hook behind.
"""

import circuitsvis.attention
import torch
from circuitsvis.utils.render import RenderedHTML
from jaxtyping import Float
from torch import Tensor
from transformer_lens.utilities import get_act_name

from grok_circuits.backend import Model
from grok_circuits.tasks import TaskData


def _pattern_name(layer: int) -> str:
    return get_act_name("pattern", layer)


def prompt_tokens(task: TaskData, split: str, index: int) -> list[str]:
    """The prompt of example ``index`` of ``split`` as readable tokens, up to and including the
    answer position (padding dropped), e.g. ``["<e_3>", "<r_1>", "<r_5>"]``."""
    s = task.splits[split]
    n = int(s.answer_pos[index]) + 1
    return [task.vocab.tokens[int(t)] for t in s.tokens[index, :n]]


def attention_pattern_tensor(
    model: Model,
    task: TaskData,
    split: str = "test_id",
    index: int = 0,
    *,
    layer: int | None = None,
) -> Float[Tensor, "head dest src"]:
    """The attention patterns drawn by :func:`attention_patterns`, as a tensor on the CPU.

    Returns:
        ``[head, dest, src]`` over the prompt's positions (up to the answer position): the
        heads of ``layer``, or of every layer in order (layer 0's heads first) when ``layer``
        is None.
    """
    if split not in task.splits:
        raise ValueError(f"no split {split!r}; the task has {sorted(task.splits)}")
    s = task.splits[split]
    if not 0 <= index < len(s):
        raise ValueError(f"index must be in [0, {len(s)}) for split {split!r}, got {index}")
    n_layers = model.cfg.n_layers
    if layer is not None and not 0 <= layer < n_layers:
        raise ValueError(f"layer must be in [0, {n_layers}) or None, got {layer}")
    layers = range(n_layers) if layer is None else [layer]
    names = {_pattern_name(li) for li in layers}
    n = int(s.answer_pos[index]) + 1
    tokens = s.tokens[index : index + 1, :n].to(model.cfg.device)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    # cache[...]: [batch=1, head, dest, src]; stack the layers' heads one after another
    return torch.cat([cache[_pattern_name(li)][0] for li in layers]).float().cpu()


def attention_patterns(
    model: Model,
    task: TaskData,
    split: str = "test_id",
    index: int = 0,
    *,
    layer: int | None = None,
) -> RenderedHTML:
    """Every attention head's pattern on one prompt of the task, as a CircuitsVis widget.

    Args:
        model: a model trained on ``task``.
        task: the task; its vocabulary gives the readable tokens.
        split: the split the prompt comes from (e.g. ``"test_id"``, ``"train_inferred"``; a
            mixed task's probes are prefixed, ``"composition.test_id"``).
        index: which example of ``split``.
        layer: draw only this layer's heads (default: every layer's, named ``L{layer}H{head}``).

    Returns:
        The ``circuitsvis.attention.attention_heads`` widget (shows itself in a notebook), with
        the prompt's tokens on both axes; the patterns it draws are
        :func:`attention_pattern_tensor`.
    """
    patterns = attention_pattern_tensor(model, task, split, index, layer=layer)
    layers = range(model.cfg.n_layers) if layer is None else [layer]
    names = [f"L{li}H{h}" for li in layers for h in range(model.cfg.n_heads)]
    return circuitsvis.attention.attention_heads(
        attention=patterns,
        tokens=prompt_tokens(task, split, index),
        attention_head_names=names,
    )
