"""Run folders: those :func:`grok_circuits.train` writes (:mod:`.run`) and folders of Hugging
Face checkpoints (:mod:`.series`)."""
