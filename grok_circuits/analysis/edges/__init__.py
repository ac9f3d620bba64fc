"""Edge-level circuits: attribution over the residual graph, faithfulness, reuse and change.

- ``graph.py``: the model as sources, destinations and edges, and the hooks that read them;
- ``attribution.py``: :func:`edge_attribution` and the registry of edge methods;
- ``eap.py``: the methods ``"eap"`` and ``"eap-ig"`` (one file per method);
- ``scores.py``: :class:`EdgeScores` and the :class:`EdgeCircuit` selected and pruned from them;
- ``faithfulness.py``: edge ablation, and circuits against random circuits of their size;
- ``mib.py``: MIB's fraction grid, CPR and CMD, and the AUROC against a known circuit;
- ``over_checkpoints.py``: CPR and CMD of the circuit found at each checkpoint of a run;
- ``reuse.py``: whether two tasks share an edge circuit;
- ``change.py``: how the top edges change between two checkpoints.
"""
