"""Encodings and MLPs (PyTorch everywhere; tinycudann when installed on CUDA)."""
