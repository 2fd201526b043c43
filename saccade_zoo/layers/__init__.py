"""Layers shared by several model families (registered serializable under "saccade_zoo").

- `saccade_zoo.layers.glimpse`: the one glimpse sampler of the continuous-location families (crop-and-resize of
  half-open pixel boxes, the multi-scale `Retina`, coordinate conversions), `GlimpseSampler` and `Retina` layers.
- `saccade_zoo.layers.spatial_transformer`: glimpses of affine z = (s, x, y), `(Localized)SpatialTransformer` layers.
- `saccade_zoo.layers.pyramid`: image pyramids in the graph (`PyramidLevel`, `pyramid_crop_and_resize`) and the
  level rules the file reader shares (`glimpse_levels`, `proxy_level`).
- `saccade_zoo.layers.resize`: `AreaResize`, area (box-filter) resizing by two matrix products (proxy images).
- `saccade_zoo.layers.ops`: shared tensor helpers (`one_hot`, `argmax_last`, `mask_visited`).

A family's own layers live in its folder: `saccade_zoo.models.bagnet.blocks` (BagNetBlock) and
`saccade_zoo.models.saccader` (AttentionNetwork, SaccaderCell, GlimpseReadout, EngineeredPolicy),
`saccade_zoo.models.variational` (ProxyEncoder, VRNNCell, CropClassifier, GlimpseWindow).
This package imports nothing else of the zoo.
"""
from saccade_zoo.layers.glimpse import GlimpseSampler, Retina
from saccade_zoo.layers.pyramid import PyramidLevel
from saccade_zoo.layers.resize import AreaResize
from saccade_zoo.layers.spatial_transformer import LocalizedSpatialTransformer, SpatialTransformer

__all__ = ["AreaResize", "GlimpseSampler", "LocalizedSpatialTransformer", "PyramidLevel", "Retina",
           "SpatialTransformer"]
