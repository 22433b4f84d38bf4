"""Beyond Reducio: the video VAEs researchers use, as cache encoders (``--vae diffusers:...``).

* :mod:`lib.zoo.geometry` - what each VAE expects of a clip and returns (:class:`VaeGeometry`), and
  the clip policy for causal (``n * k + 1`` frame) models;
* :mod:`lib.zoo.adapters` - one adapter per diffusers class (Wan 2.1, HunyuanVideo, LTX-Video,
  CogVideoX, Cosmos, a per-frame image ``AutoencoderKL``);
* :mod:`lib.zoo.sources` - ``diffusers:<org>/<repo>[@revision]`` and ``diffusers:<folder>``;
* :mod:`lib.zoo.encoder` - the cache encoder (posterior mode, pipeline normalisation, cache key);
* :mod:`lib.zoo.tiny` - tiny random-init instances of every adapter (tests, plumbing checks);
* :mod:`lib.zoo.cost` - parameters, encode FLOPs and latent bytes per clip;
* :mod:`lib.zoo.study` - the zoo study: the same heads on every cached latent.

diffusers is optional (``pip install -e '.[zoo]'``); nothing outside a ``diffusers:`` source
imports it. CLI: ``python -m lib.zoo {geometry,cost,tiny}``.
"""

from lib.zoo.adapters import ADAPTERS, Adapter, adapter_for_class, get_adapter
from lib.zoo.geometry import VaeGeometry
from lib.zoo.sources import DIFFUSERS_PREFIX, ZooSourceError, is_diffusers_source

__all__ = ["ADAPTERS", "DIFFUSERS_PREFIX", "Adapter", "VaeGeometry", "ZooSourceError", "adapter_for_class",
           "get_adapter", "is_diffusers_source"]
