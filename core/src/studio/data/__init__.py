"""Data modules (cameras and batches)."""
