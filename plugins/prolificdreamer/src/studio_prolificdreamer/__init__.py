"""studio-prolificdreamer: ProlificDreamer: variational score distillation with a LoRA-tuned UNet."""

__version__ = "0.1.0"
