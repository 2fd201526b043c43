"""Layers shared by several model families (registered serializable under "saccade_zoo").

- `saccade_zoo.layers.glimpse`: the one glimpse sampler of the continuous-location families (crop-and-resize of
  half-open pixel boxes, the multi-scale `Retina`, coordinate conversions), `GlimpseSampler` and `Retina` layers.
- `saccade_zoo.layers.ops`: shared tensor helpers (`one_hot`, `argmax_last`, `mask_visited`).

A family's own layers live in its folder: `saccade_zoo.models.bagnet.blocks` (BagNetBlock) and
`saccade_zoo.models.saccader` (AttentionNetwork, SaccaderCell, GlimpseReadout, EngineeredPolicy).
This package imports nothing else of the zoo.
"""
from saccade_zoo.layers.glimpse import GlimpseSampler, Retina

__all__ = ["GlimpseSampler", "Retina"]
