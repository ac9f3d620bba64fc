"""What every heatmap shares: its row labels, the numbers written in its cells, its context.

One row-labelling scheme for every figure: a point of the residual stream is named as the
logit lens names it, ``"{layer}_pre"`` (the input of block ``layer``; ``"0_pre"`` is the
embeddings), ``"{layer}_mid"``, ``"{layer}_post"``, ``"final_post"``; a component output as
``"{layer}_attn_out"``, ``"{layer}_mlp_out"``, ``"{layer}_z"``; a row of components (the heads
and the MLP of one block) as ``"block {layer}"``.
"""

import matplotlib.pyplot as plt

#: The suffix of each activation's row label, after TransformerLens' hook names.
_SUFFIX = {
    "resid_pre": "pre",
    "resid_mid": "mid",
    "resid_post": "post",
    "attn_out": "attn_out",
    "mlp_out": "mlp_out",
    "z": "z",
}

#: Widest figure (inches) that a notebook shows without shrinking it much.
NOTEBOOK_WIDTH = 11.0

#: Smallest font (points) still worth writing in a cell; below it the cells stay blank.
MIN_CELL_FONT = 5.5
MAX_CELL_FONT = 9.0


def row_labels(n_layers: int, activation: str = "resid_pre") -> list[str]:
    """``["0_pre", "1_pre", ...]`` for ``resid_pre``, and so on for the other activations."""
    return [f"{layer}_{_SUFFIX.get(activation, activation)}" for layer in range(n_layers)]


def block_labels(n_layers: int) -> list[str]:
    """Row labels of a grid of components (heads and MLP) per block: ``"block 0"``, ..."""
    return [f"block {layer}" for layer in range(n_layers)]


def cell_fontsize(ax, n_rows: int, n_cols: int, max_chars: int) -> float | None:
    """A font size (points) at which ``max_chars`` characters fit in one cell of an
    ``n_rows x n_cols`` grid filling ``ax``, or None when that would be too small to read.

    Measured on the figure in inches, so that it holds whatever the display resolution; a
    figure wider than :data:`NOTEBOOK_WIDTH` is assumed shrunk to it, as a notebook shows it.
    """
    fig = ax.figure
    width_in, height_in = fig.get_size_inches()
    shrink = min(1.0, NOTEBOOK_WIDTH / width_in)
    box = ax.get_position()  # in figure fractions
    cell_w = box.width * width_in * 72 * shrink / max(n_cols, 1)
    cell_h = box.height * height_in * 72 * shrink / max(n_rows, 1)
    # a digit is about 0.6 em wide; leave a margin in the cell
    size = min(0.85 * cell_w / (0.6 * max(max_chars, 1)), 0.6 * cell_h, MAX_CELL_FONT)
    return size / shrink if size >= MIN_CELL_FONT else None


def text_color(cmap, norm, value: float) -> str:
    """Black on light cells, white on dark ones."""
    r, g, b, _ = plt.get_cmap(cmap)(norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


#: How many decades of width the linear stretch from step 0 to the first logged step takes on a
#: step axis (:func:`step_axis`): little, so that the logarithmic part keeps the panel.
LINEAR_STRETCH = 0.2


def step_axis(ax, steps) -> None:
    """A logarithmic step axis on which step 0 is drawn where it is: linear from 0 to the first
    positive step (over :data:`LINEAR_STRETCH` decades of width), logarithmic after it, and
    labelled so. Drawing step 0 at step 1 instead would spend two decades of the axis on the
    one line from 1 to a first evaluation at 100."""
    steps = [s for s in steps if s is not None]
    positive = [s for s in steps if s > 0]
    if not positive:
        ax.set_xlabel("step")
        return
    if min(steps) > 0:
        ax.set_xscale("log")
        ax.set_xlabel("step (log)")
        return
    first = min(positive)
    ax.set_xscale("symlog", linthresh=first, linscale=LINEAR_STRETCH)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"step (log; linear from 0 to {first})")


def context(*, split=None, step=None, swap=None, n_examples=None) -> str:
    """``"train_inferred, step 2100, swap h, 300 examples"``: what a figure was measured on,
    leaving out what is not known."""
    parts = []
    if split is not None:
        parts.append(str(split))
    if step is not None:
        parts.append(f"step {step}")
    if swap is not None:
        parts.append(f"swap {swap}")
    if n_examples is not None:
        parts.append(f"{n_examples} examples")
    return ", ".join(parts)


def read_table(frame, columns: set[str], who: str, made_by: str):
    """The DataFrame (or CSV path) ``frame``, refused with one line when it lacks ``columns``."""
    import pandas as pd

    table = pd.read_csv(frame) if not isinstance(frame, pd.DataFrame) else frame
    missing = columns - set(table.columns)
    if missing:
        raise ValueError(
            f"{who}: the table lacks columns {sorted(missing)}; pass the CSV that {made_by} writes"
        )
    return table
