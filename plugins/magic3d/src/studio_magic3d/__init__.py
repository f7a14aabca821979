"""studio-magic3d: Magic3D: coarse NeRF then a textured DMTet mesh refined at high resolution."""

__version__ = "0.1.0"
