"""Package data (the DreamFusion prompt library)."""
