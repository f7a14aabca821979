"""Implicit geometries introduced by DreamFusion-style methods."""
