"""Geometry contracts (implicit fields and meshes)."""
