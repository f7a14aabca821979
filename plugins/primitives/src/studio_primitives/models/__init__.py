"""The primitives diffusion models: word-level tokenizers and small SD / IF pipelines."""
