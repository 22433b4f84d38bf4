"""Video classification from compressed video-VAE (Reducio) latents.

All logic lives in this package; notebooks in ``notebooks/`` are thin narration over it.
Sub-packages: :mod:`lib.data` (video decoding, clip sampling, UCF101, the synthetic dataset).
"""

__version__ = "0.1.0"
