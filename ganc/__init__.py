"""ganc: compress image-to-image GANs (GAN Compression supernet search and
local-density pruning agents) on a Ray cluster."""

__version__ = "0.1.0"
