"""Clean-room Reducio-VAE (Microsoft, arXiv 2411.13552) in plain PyTorch.

- :class:`ReducioVAE` (``lib.vae.model``): the model; ``from_config(model.params)``,
  ``from_preset(name)``; ``parts="encoder"`` builds only what latents need.
- :class:`ReducioConfig` (``lib.vae.config``): frozen config read from the official structure.
- :data:`PRESETS` / :func:`get_preset` (``lib.vae.presets``): ``reducio-ft4``, ``reducio-ft2``,
  ``reference-small``, ``local-smoke``, ``local-default``.
- :func:`load_reducio` (``lib.vae.loading``): build + load a checkpoint.

Module names and state-dict keys equal the official ones; numerics match the official code
(see ``tests/test_vae_parity.py``). Only torch is needed at run time.
"""

from lib.vae.config import ContentEncoderConfig, ReducioConfig, VideoAutoencoderConfig
from lib.vae.loading import load_reducio
from lib.vae.model import DiagonalGaussian, ReducioVAE, normalize_latent
from lib.vae.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "ContentEncoderConfig",
    "DiagonalGaussian",
    "ReducioConfig",
    "ReducioVAE",
    "VideoAutoencoderConfig",
    "get_preset",
    "load_reducio",
    "normalize_latent",
]
