"""Materials of studio-fantasia3d."""
