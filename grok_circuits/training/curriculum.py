"""The hop curriculum of Kohli et al. (2026, arXiv 2604.07822) for k-hop composition: train on
the queries of at most ``k`` hops (atomic facts, one hop, always included), starting at
``k = 2``, and add the ``k + 1``-hop queries once the ``k``-hop ID test accuracy passes a
threshold (theirs: 0.95), one hop per evaluation at most, up to the task's ``train_hops``.

A training row's hop count is its number of prompt tokens after the head entity (its non-pad
tokens less one), so the curriculum applies to any task whose prompts are a head followed by
one token per hop, and names its ``k``-hop probe as the composition task does (``test_id`` for
two hops, ``test_id_{k}hop`` above). The stage at any step is a function of the metrics logged
before it, so a resumed run trains on the same rows as one never stopped; each evaluation logs
the stage it ends in as ``curriculum_hops``.
"""

import torch

from grok_circuits.tasks import Split, TaskData


def probe_for(hops: int) -> str:
    """The ID test probe whose accuracy moves the curriculum on from ``hops`` hops."""
    return "test_id" if hops == 2 else f"test_id_{hops}hop"


class HopCurriculum:
    """The rows of the training split each stage trains on, and the stage the metrics say.

    Args:
        task: the task (its training split, its pad token and its probes).
        threshold: the ``k``-hop ID test accuracy above which stage ``k`` ends.
        device: where the training split lives.
    """

    def __init__(self, task: TaskData, threshold: float, device: torch.device) -> None:
        self.split = task.train.to(device)
        self.threshold = threshold
        self.hops = (self.split.tokens != task.vocab.pad_id).sum(1) - 1
        self.top = int(self.hops.max())
        probes = set(task.probe_names)
        missing = [probe_for(k) for k in range(2, self.top) if probe_for(k) not in probes]
        if self.top < 3 or missing:
            raise ValueError(
                f"TrainConfig.hop_curriculum needs a task trained on 3 or more hops with an ID "
                f"test probe per hop count (missing {missing}; it trains on up to {self.top}); "
                "use make_task('composition', train_hops=3 or more, ...), or unset hop_curriculum"
            )
        self._rows: dict[int, Split] = {}

    def stage(self, metrics: list[dict]) -> int:
        """The most hops trained on after the evaluations ``metrics`` (2 before any)."""
        k = 2
        for row in metrics:
            if k < self.top and row.get(f"{probe_for(k)}_acc", 0.0) > self.threshold:
                k += 1
        return k

    def rows(self, hops: int) -> Split:
        """The training rows of at most ``hops`` hops."""
        if hops not in self._rows:
            keep = torch.nonzero(self.hops <= hops).flatten()
            self._rows[hops] = self.split.select(keep)
        return self._rows[hops]
