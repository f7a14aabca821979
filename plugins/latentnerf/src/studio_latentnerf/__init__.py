"""studio-latentnerf: Latent-NeRF and Sketch-Shape: a NeRF in Stable Diffusion's latent space."""

__version__ = "0.1.0"
