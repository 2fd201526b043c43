"""Image pyramids in the graph, and the one rule that picks a pyramid level for a glimpse or a proxy.

Why: a huge image is read from a tiled pyramid TIFF (:mod:`saccade_zoo.data.tiled_tiff`): a glimpse whose window
is many times the glimpse side is resampled from a coarser level, so that a read decodes a few tiles whatever the
window's size (and the glimpse is anti-aliased rather than point-sampled from full resolution). A model trained on
in-memory images must see the same glimpse, so training samples from the same pyramid, built in the graph with the
writer's filter, at the level the same rule picks:

* Level k of the pyramid is level k - 1 halved by a 2 x 2 box filter, sides ``ceil(side / 2)`` (an odd side's
  last row/column is replicated before averaging), exactly :func:`saccade_zoo.data.tiled_tiff.write_tiled_tiff`'s
  levels (which round to the nearest integer for integer images: uint8 files differ from the float pyramid by at
  most half a grey level per level). Level k pixel j covers level-0 pixels ``[j 2^k, (j + 1) 2^k)``, so a box in
  level-0 pixels is the box divided by ``2^k`` at level k (``TiledImage.level_scale``).
* :func:`glimpse_level` / :func:`glimpse_levels`: a glimpse of ``L`` pixels reads the coarsest level at which its
  window is still at least ``factor`` (2) x ``L`` on both axes, capped at ``max_level``: the rule of
  ``TiledImage.choose_level``, written as a count of comparisons against exact constants (``factor * L * 2^j``) so
  that NumPy and the graph pick the same level for the same float32 box.
* :func:`proxy_level`: a proxy of ``J`` pixels is area-resized from the coarsest level whose sides are both still
  at least ``4 J`` (every proxy pixel averages at least 16 pixels of that level); a 2528 x 2528 image with a 32 x 32
  proxy uses level 4 (158 x 158), which ``write_tiled_tiff`` always writes (its coarsest level has a longer side in
  (128, 256]).

Everything here is linear in the pixels with weights summing to one, so it commutes with the zoo's per-channel
``(x - mean) / std`` normalisation: the file path may read raw pixels and normalise after sampling.
"""
import numpy as np

import keras
from keras import ops

from saccade_zoo.layers.glimpse import _as_hw, crop_and_resize

LEVEL_FACTOR = 2.0  # a glimpse's window at its level is >= LEVEL_FACTOR x the glimpse side
PROXY_RATIO = 4  # a proxy is resized from a level >= PROXY_RATIO x the proxy side


# ----------------------------------------------------------------------------------------------------------------
# The level rules (NumPy / Python: shared by the models' constructors and the file reader)
# ----------------------------------------------------------------------------------------------------------------

def level_shape(height, width, level):
    """(h, w) of pyramid level ``level`` of an ``height x width`` image: ``ceil(side / 2^level)``."""
    return -(-int(height) // 2 ** int(level)), -(-int(width) // 2 ** int(level))


def glimpse_levels(boxes, size, max_level, factor=LEVEL_FACTOR):
    """Pyramid level of each box (NumPy): the number of ``j`` in ``1..max_level`` with the window's height and width
    both ``>= factor * L * 2^j`` (``L`` the glimpse side on that axis).

    Args:
      boxes: (..., 4) pixel boxes (y0, x0, y1, x1); cast to float32 first, as in the graph.
      size: glimpse side L or (h, w).
      max_level: the coarsest level allowed (the model's pyramid has ``max_level + 1`` levels).
    Returns (...,) int64 levels.
    """
    oh, ow = _as_hw(size)
    boxes = np.asarray(boxes, np.float32)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    level = np.zeros(h.shape, np.int64)
    for j in range(1, int(max_level) + 1):
        level += ((h >= np.float32(factor * oh * 2 ** j)) & (w >= np.float32(factor * ow * 2 ** j))).astype(np.int64)
    return level


def glimpse_level(box_h, box_w, size, max_level, factor=LEVEL_FACTOR):
    """The level :func:`glimpse_levels` picks for one window of ``box_h x box_w`` pixels (Python int)."""
    return int(glimpse_levels(np.array([0.0, 0.0, box_h, box_w], np.float32), size, max_level, factor))


def levels_needed(height, width, max_window_fraction, size, factor=LEVEL_FACTOR):
    """Levels a pyramid needs so that :func:`glimpse_levels` is never capped: windows up to ``max_window_fraction``
    of the image side (a spatial transformer's window is that fraction of each side)."""
    oh, ow = _as_hw(size)
    h, w = np.float32(max_window_fraction * height), np.float32(max_window_fraction * width)
    count = 1
    while h >= np.float32(factor * oh * 2 ** count) and w >= np.float32(factor * ow * 2 ** count):
        count += 1
    return count


def proxy_level(height, width, proxy_size, ratio=PROXY_RATIO, max_level=None):
    """The coarsest pyramid level whose sides are both ``>= ratio x`` the proxy's (0 when even level 0 is smaller),
    capped at ``max_level`` (e.g. a file's coarsest level)."""
    ph, pw = _as_hw(proxy_size, "proxy_size")
    level = 0
    while True:
        h, w = level_shape(height, width, level + 1)
        if h < ratio * ph or w < ratio * pw or (max_level is not None and level + 1 > max_level):
            return level
        level += 1


# ----------------------------------------------------------------------------------------------------------------
# The pyramid in the graph
# ----------------------------------------------------------------------------------------------------------------

def halve(images):
    """One pyramid step: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C), 2 x 2 box mean with an odd side's last row /
    column replicated (``write_tiled_tiff``'s filter). Float32 (float64 for float64 images)."""
    images = ops.convert_to_tensor(images)
    dtype = "float64" if keras.backend.standardize_dtype(images.dtype) == "float64" else "float32"
    images = ops.cast(images, dtype)
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(f"An image pyramid needs a static height and width, got shape {images.shape}.")
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:  # symmetric padding of one row/column = replicate the last one (TFLite MIRROR_PAD)
        images = ops.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="symmetric")
    return ops.average_pool(images, 2, strides=2, padding="valid")


def image_pyramid(images, num_levels):
    """[level 0, ..., level num_levels - 1] of (B, H, W, C) images (level 0 is the images themselves)."""
    levels = [ops.convert_to_tensor(images)]
    for _ in range(int(num_levels) - 1):
        levels.append(halve(levels[-1]))
    return levels


def pyramid_crop_and_resize(images, boxes, size, num_levels, factor=LEVEL_FACTOR):
    """:func:`~saccade_zoo.layers.glimpse.crop_and_resize` from the pyramid level :func:`glimpse_levels` picks for
    each box: what ``TiledImage.read_region(*box, size, level=glimpse_levels(box, size, num_levels - 1))`` returns
    from a file holding the same pyramid.

    Args:
      images: (B, H, W, C); boxes: (B, T, 4) or (B, 4) pixel boxes in level-0 pixels; size: L or (h, w);
      num_levels: levels of the pyramid (1: plain ``crop_and_resize``).
    Returns (B, T, h, w, C) (or (B, h, w, C)), float32 for non-float64 images. Every level is sampled and the
    picked one is kept (a one-hot blend: the gradient reaches the box through the picked level's bilinear weights);
    memory O(num_levels * B * T * h * w * C) besides the pyramid (4/3 of the image).
    """
    num_levels = int(num_levels)
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}.")
    if num_levels == 1:
        return crop_and_resize(images, boxes, size)
    oh, ow = _as_hw(size)
    boxes = ops.cast(ops.convert_to_tensor(boxes), "float32")
    levels = image_pyramid(images, num_levels)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    out = None
    chosen = ops.zeros_like(height)
    for j in range(1, num_levels):
        big = ops.logical_and(height >= float(factor * oh * 2 ** j), width >= float(factor * ow * 2 ** j))
        chosen = chosen + ops.cast(big, "float32")
    for k, level in enumerate(levels):
        sampled = crop_and_resize(level, boxes * (0.5 ** k), (oh, ow))
        weight = ops.cast(ops.equal(chosen, float(k)), sampled.dtype)
        term = sampled * ops.expand_dims(ops.expand_dims(ops.expand_dims(weight, -1), -1), -1)
        out = term if out is None else out + term
    return out


@keras.saving.register_keras_serializable(package="saccade_zoo")
class PyramidLevel(keras.layers.Layer):
    """Level ``level`` of the images' pyramid (:func:`halve` applied ``level`` times); no weights. A variational
    saccader area-resizes its proxy from it (:func:`proxy_level`), as the file path reads that level from disk."""

    def __init__(self, level, **kwargs):
        super().__init__(**kwargs)
        self.level = int(level)
        if self.level < 0:
            raise ValueError(f"level must be >= 0, got {level}.")

    def call(self, images):
        return image_pyramid(images, self.level + 1)[-1]

    def compute_output_shape(self, input_shape):
        h, w = level_shape(input_shape[1], input_shape[2], self.level)
        return (input_shape[0], h, w, input_shape[3])

    def compute_output_spec(self, images):
        dtype = "float64" if keras.backend.standardize_dtype(images.dtype) == "float64" else "float32"
        return keras.KerasTensor(self.compute_output_shape(images.shape), dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(level=self.level)
        return config


__all__ = ["LEVEL_FACTOR", "PROXY_RATIO", "PyramidLevel", "glimpse_level", "glimpse_levels", "halve",
           "image_pyramid", "level_shape", "levels_needed", "proxy_level", "pyramid_crop_and_resize"]
