"""Training: the loop and its one step, the plug-ins (losses, gradient hooks), progress
measures, presets, mirroring to trackers, precision and the throughput measurement."""
