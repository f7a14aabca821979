"""studio-dreamfusion: DreamFusion: score distillation of a NeRF (implicit volume, hash grid, diffuse shading)."""

__version__ = "0.1.0"
