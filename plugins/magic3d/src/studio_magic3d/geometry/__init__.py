"""Explicit geometries of Magic3D's refine stage (a deformable tetrahedral SDF grid)."""
