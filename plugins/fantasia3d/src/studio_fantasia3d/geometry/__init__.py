"""Fantasia3D's geometry: ``implicit-sdf`` (an SDF network with shape initialisation)."""
