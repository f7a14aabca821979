"""studio-fantasia3d: Fantasia3D: disentangled geometry (DMTet) and appearance (PBR) learning."""

__version__ = "0.1.0"
