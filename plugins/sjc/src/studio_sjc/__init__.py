"""studio-sjc: Score Jacobian Chaining: perturb-and-average scoring on a dense voxel grid."""

__version__ = "0.1.0"
