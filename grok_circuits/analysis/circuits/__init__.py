"""Node-level circuits: which components carry an effect, and their reuse across tasks."""
