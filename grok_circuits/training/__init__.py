"""Training: the loop and its one step (``loop``), the plug-ins (``plugins``: losses, gradient
hooks) and the progress measures (``progress_measures``), each a registry extended by name, the
presets, mirroring to trackers (``tracking``), the forward pass's precision (``precision``), the
CPU threads and determinism (``cpu``), and the throughput measurement (``throughput``)."""
