"""Every plot of grok_circuits; the only place that imports matplotlib.

Result objects' ``.plot()`` methods call into here, so notebooks read as a story.
"""

from grok_circuits.viz.training import plot_accuracy_curves, save_figure
