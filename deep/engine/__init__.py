"""The training engine of the deep methods: config, data, the loop, checkpoints, inference
and multi-process glue (import from the submodules)."""
