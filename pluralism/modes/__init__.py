"""The meta-agent's three aggregation modes: overton, steerable, distributional."""
