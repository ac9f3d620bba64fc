"""Edge-level circuits: attribution over the residual graph, faithfulness, reuse and change."""
