"""The training loop and what it needs: checkpoints, optimizers, signals, metrics, ranks."""
