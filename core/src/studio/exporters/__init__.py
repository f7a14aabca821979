"""Exporters turn a trained system into files (meshes, textures)."""
