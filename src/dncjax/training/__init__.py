"""Training machinery shared by every job: losses, the one optimiser, the jitted steps, the
schedule (`loop`), the run skeleton (`run`), checkpoints, data parallelism, dynamic
evaluation and the gradient check. It knows no job (see ARCHITECTURE.md)."""
