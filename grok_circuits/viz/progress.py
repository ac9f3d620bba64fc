"""Plots of measurements over training: any analysis over checkpoints, and the Fourier spectrum
of an embedding (a progress measure of grokking, Nanda et al. 2023)."""

import matplotlib.pyplot as plt

#: Key frequencies and the rest, told apart by more than hue (dark vs light).
KEY_COLOR, OTHER_COLOR = "#1f4e9c", "#b8c7e0"


def _axes(ax, figsize=(6, 3.5)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_fourier_spectrum(spectrum, ax=None, *, title=None):
    """Bars of each frequency's share of the embedding's energy, key frequencies dark; the title
    says the share the key frequencies hold (at least the spectrum's ``coverage``)."""
    fig, ax = _axes(ax)
    key = set(spectrum.key_frequencies)
    colors = [KEY_COLOR if f in key else OTHER_COLOR for f in spectrum.frequencies]
    ax.bar(spectrum.frequencies, spectrum.share.numpy(), color=colors, width=0.9)
    for f in spectrum.key_frequencies:
        ax.annotate(
            str(f),
            (f, float(spectrum.share[f - 1])),
            ha="center",
            va="bottom",
            fontsize=7,
            color=KEY_COLOR,
        )
    ax.set_xlabel("frequency k (of 2πk/p)")
    ax.set_ylabel("share of embedding energy")
    step = "" if spectrum.step is None else f", step {spectrum.step}"
    ax.set_title(
        title
        or f"Fourier spectrum of W_E over p={spectrum.p} tokens{step}\n"
        f"{len(key)} key frequencies (the fewest holding ≥ {spectrum.coverage:.0%}) hold "
        f"{spectrum.top_share(len(key)):.0%}, gini {spectrum.gini:.2f}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def getter_name(get) -> str:
    """What a getter of :meth:`~grok_circuits.analysis.over_checkpoints.OverCheckpoints.plot`
    reads, for labels: an attribute or key name, a named function's name, else ``"value"`` (a
    lambda has no name to show)."""
    if isinstance(get, str):
        return get
    name = getattr(get, "__name__", "")
    return name if name and name != "<lambda>" else "value"


def _is_share(values) -> bool:
    """Whether every finite value lies in [0, 1] (a share, an accuracy, an MRR): such values
    are drawn on a 0-1 axis, where chance-level noise looks like noise, not like a rise."""
    import torch

    values = torch.as_tensor(values, dtype=torch.float64)
    finite = values[torch.isfinite(values)]
    return finite.numel() > 0 and bool((finite >= 0).all() and (finite <= 1).all())


def plot_over_checkpoints(over, get=None, *, ax=None, title=None, label=None):
    """A measurement over the training step: lines for a number (or a few) per step, a
    step x index heatmap for a longer vector per step. Labelled with ``label``, else the
    getter's name (:func:`getter_name`); values that all lie in [0, 1] are drawn on a 0-1
    axis (or colour range) rather than one fitted to them."""
    fig, ax = _axes(ax)
    name = label or getter_name(get)
    if get is None and over.results and isinstance(over.results[0], dict):
        frame = over.to_frame()
        for column in frame.columns:
            ax.plot(frame.index, frame[column], marker="o", ms=3, label=str(column))
        ax.legend(fontsize=8)
        share = _is_share(frame.to_numpy(dtype=float))
    else:
        values = over.stack(get)
        share = _is_share(values)
        if values.dim() == 1:
            ax.plot(over.steps, values.numpy(), marker="o", ms=3)
            ax.set_ylabel(name)
        elif values.dim() == 2 and values.shape[1] <= 8:
            for j in range(values.shape[1]):
                ax.plot(over.steps, values[:, j].numpy(), marker="o", ms=3, label=f"{j}")
            ax.set_ylabel(name)
            ax.legend(fontsize=8)
        elif values.dim() == 2:
            im = ax.imshow(
                values.T.numpy(),
                origin="lower",
                aspect="auto",
                cmap="viridis",
                extent=(-0.5, len(over.steps) - 0.5, -0.5, values.shape[1] - 0.5),
                **(dict(vmin=0.0, vmax=1.0) if share else {}),
            )
            ticks = range(0, len(over.steps), max(1, len(over.steps) // 8))
            ax.set_xticks(list(ticks), [str(over.steps[i]) for i in ticks])
            fig.colorbar(im, ax=ax, shrink=0.8, label=name)
            ax.set_ylabel("index")
            share = False  # the colour range holds it; the y axis is the index
        else:
            raise ValueError(f"cannot plot values of shape {tuple(values.shape[1:])} per step")
    if share:
        ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_title(title or f"{getter_name(get)} over {len(over.steps)} checkpoints", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["getter_name", "plot_fourier_spectrum", "plot_over_checkpoints"]
