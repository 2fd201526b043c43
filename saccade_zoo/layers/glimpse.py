"""One glimpse sampler for the continuous-location families (spatial transformers, RAM's retina, DRAM).

Coordinate convention (used by every function here, by ``TiledImage.read_region`` and by the boxes the models
return):

* Pixel coordinates are continuous, in level-0 (full-resolution) pixels, ordered (y, x). Pixel ``i`` covers the
  half-open interval ``[i, i + 1)``; its centre is ``i + 0.5``. The image spans ``[0, H) x [0, W)``.
* A box is ``(y0, x0, y1, x1)``, half-open ``[y0, y1) x [x0, x1)``, floats allowed (sub-pixel boxes, boxes
  partly or wholly outside the image). A box of integer corners covering whole pixels and resampled to its own
  size returns exactly those pixels.
* Resampling a box to ``h x w`` (bilinear, half-pixel centres): output pixel ``(i, j)`` samples the point
  ``(y0 + (i + 0.5) * (y1 - y0) / h,  x0 + (j + 0.5) * (x1 - x0) / w)``; subtract 0.5 to get the fractional
  pixel-centre index that is interpolated bilinearly between the four nearest pixel centres. Pixels outside the
  image read as zeros (zero padding, blended bilinearly at the border). This is ``TiledImage.read_region(...,
  level=0)``, and ``grid_sample(..., align_corners=False, padding_mode="zeros")`` of an affine grid.
* Centre/size form: ``(cy, cx, h, w)`` with ``cy = (y0 + y1) / 2``, ``h = y1 - y0``.
* Normalised coordinates in ``[-1, 1]`` (RAM/DRAM locations, spatial-transformer translations): -1 is the
  top/left image *edge* (pixel coordinate 0), +1 the bottom/right edge (pixel coordinate H or W), 0 the image
  centre; ``y_pixel = (y_norm + 1) * H / 2`` (the ``align_corners=False`` convention). A length (box side)
  converts without the offset: ``h_pixel = h_norm * H / 2``; the full image is 2 wide. A spatial transformer
  ``[[s, 0, tx], [0, s, ty]]`` reads the normalised box ``(ty - s, tx - s, ty + s, tx + s)``.

Functions: :func:`crop_and_resize` (the sampler), :func:`retina` (RAM's multi-scale glimpse),
:func:`boxes_to_center_size`, :func:`center_size_to_boxes`, :func:`glimpse_boxes`, :func:`normalized_to_pixels`,
:func:`pixels_to_normalized`. Layers: :class:`GlimpseSampler`, :class:`Retina`.

Implementation: each output pixel gathers its four neighbours from the flattened image with one ``gather`` per
corner (TFLite built-in GATHER), so memory is O(B * T * h * w * C) whatever the image size, no full-image mask or
grid is ever built, there is no ``crop_and_resize`` / ``extract_glimpse`` / ``ImageProjectiveTransform`` (which
need Flex ops or fail under XLA), and the result is differentiable in the images and in the box corners (through
the bilinear weights; ``floor`` is treated as a constant, so the gradient is the usual piecewise one of bilinear
interpolation). Coordinates and the bilinear blend are computed in float32 (float64 for float64 images); the
result has the images' dtype (float32 for integer images).
"""
import keras
import tensorflow as tf
from keras import ops


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------

def _as_hw(size, what="size"):
    """``L`` or ``(h, w)`` -> (h, w) positive Python ints."""
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ValueError(f"{what} must be an int or a pair (h, w), got {size!r}.")
        h, w = size
    else:
        h = w = size
    if int(h) != h or int(w) != w or int(h) < 1 or int(w) < 1:
        raise ValueError(f"{what} must be positive integers, got {size!r}.")
    return int(h), int(w)


def _as_pair(value, what):
    """A positive number or a pair -> (a, b) Python floats."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{what} must be a number or a pair (h, w), got {value!r}.")
        a, b = float(value[0]), float(value[1])
    else:
        a = b = float(value)
    if not (a > 0 and b > 0):
        raise ValueError(f"{what} must be positive, got {value!r}.")
    return a, b


def _expand(x, axes):
    """expand_dims, one axis after the other. Not ``x[..., None]``: a strided slice with new axes on dynamic
    shapes only converts to TFLite as a Flex op."""
    for axis in (axes if isinstance(axes, tuple) else (axes,)):
        x = ops.expand_dims(x, axis)
    return x


def _float_dtype(x, default="float32"):
    dtype = keras.backend.standardize_dtype(x.dtype)
    return dtype if dtype in ("float16", "bfloat16", "float32", "float64") else default


def _to_float(x):
    x = ops.convert_to_tensor(x)
    return ops.cast(x, _float_dtype(x))


def boxes_to_center_size(boxes):
    """(..., 4) boxes (y0, x0, y1, x1) -> (..., 4) (cy, cx, h, w)."""
    boxes = _to_float(boxes)
    y0, x0, y1, x1 = ops.unstack(boxes, 4, axis=-1)
    return ops.stack([(y0 + y1) * 0.5, (x0 + x1) * 0.5, y1 - y0, x1 - x0], axis=-1)


def center_size_to_boxes(center_size):
    """(..., 4) (cy, cx, h, w) -> (..., 4) boxes (y0, x0, y1, x1)."""
    center_size = _to_float(center_size)
    cy, cx, h, w = ops.unstack(center_size, 4, axis=-1)
    return ops.stack([cy - h * 0.5, cx - w * 0.5, cy + h * 0.5, cx + w * 0.5], axis=-1)


def glimpse_boxes(centers, size):
    """Boxes of side ``size`` centred on ``centers``.

    Args:
      centers: (..., 2) centres (y, x) in pixel coordinates.
      size: the box side(s) in pixels: a number, a pair (h, w), or a (..., 2) tensor of (h, w) (centres and
        sizes broadcast against each other).
    Returns (..., 4) boxes (y0, x0, y1, x1).
    """
    centers = _to_float(centers)
    if isinstance(size, (int, float, list, tuple)):
        size = ops.convert_to_tensor(_as_pair(size, "size"), dtype=centers.dtype)
    else:
        size = ops.cast(size, centers.dtype)
    half = size * 0.5
    return ops.concatenate([centers - half, centers + half], axis=-1)


def _yx_scale(coords, image_size):
    """(H, W) repeated over the last axis of ``coords`` ((y, x) pairs), in coords' dtype."""
    if isinstance(image_size, (list, tuple)) and not any(hasattr(s, "dtype") for s in image_size):
        hw = ops.convert_to_tensor([float(image_size[0]), float(image_size[1])], dtype=coords.dtype)
    else:
        hw = ops.cast(ops.stack([image_size[0], image_size[1]]), coords.dtype)
    pairs = coords.shape[-1]
    if pairs is None or pairs % 2:
        raise ValueError(f"coordinates must hold (y, x) pairs on their last axis, got shape {coords.shape}.")
    return ops.tile(hw, [pairs // 2])


def normalized_to_pixels(coords, image_size):
    """Normalised [-1, 1] coordinates -> pixel coordinates: ``(c + 1) * size / 2``.

    Args:
      coords: (..., 2k) (y, x) pairs: points (y, x) or boxes (y0, x0, y1, x1). -1 = top/left image edge,
        +1 = bottom/right edge.
      image_size: (H, W) as ints or scalar tensors (e.g. ``ops.shape(images)[1:3]``).
    """
    coords = _to_float(coords)
    return (coords + 1.0) * (0.5 * _yx_scale(coords, image_size))


def pixels_to_normalized(coords, image_size):
    """Pixel coordinates (..., 2k) (y, x) pairs -> normalised [-1, 1] coordinates (inverse of
    :func:`normalized_to_pixels`)."""
    coords = _to_float(coords)
    return coords * (2.0 / _yx_scale(coords, image_size)) - 1.0


# ----------------------------------------------------------------------------------------------------------------
# The sampler
# ----------------------------------------------------------------------------------------------------------------

def _axis_taps(start, stop, out_len, limit, dtype):
    """Per-axis bilinear taps for windows [start, stop) resampled to ``out_len`` samples.

    start, stop: (B, T) floats. Returns the two neighbour indices (int32, clipped into the image) and their
    weights (zero for neighbours outside the image), each (B, T, out_len). ``limit`` is the axis length (float).
    """
    # Same operation order as TiledImage.read_region: a box of its own output size samples integer centres exactly.
    centres = ops.arange(out_len, dtype=dtype) + 0.5
    pos = _expand(start, -1) + centres * _expand((stop - start) / float(out_len), -1) - 0.5  # pixel-centre index
    base = ops.stop_gradient(ops.floor(pos))
    # A NaN box would cast to an out-of-range index (an error on CPU): read it as outside, so NaN propagates instead.
    base = ops.where(ops.equal(base, base), base, -2.0)
    frac = pos - base  # carries the gradient with respect to the box
    upper = base + 1.0
    last = limit - 1.0
    inside0 = ops.cast(ops.logical_and(base >= 0.0, base <= last), dtype)
    inside1 = ops.cast(ops.logical_and(upper >= 0.0, upper <= last), dtype)
    # Clip in float before the cast so far-away boxes cannot overflow int32.
    index0 = ops.cast(ops.clip(base, 0.0, last), "int32")
    index1 = ops.cast(ops.clip(upper, 0.0, last), "int32")
    return index0, index1, (1.0 - frac) * inside0, frac * inside1


def crop_and_resize(images, boxes, size):
    """Bilinear crop-and-resize of pixel boxes, in-graph, batched (see the module docstring for the convention).

    Args:
      images: (B, H, W, C) images (any float dtype; integer images are read as float32 values, unscaled).
      boxes: (B, T, 4) or (B, 4) float boxes (y0, x0, y1, x1) in pixel coordinates of ``images``; box t of row b
        is cut from image b. Coordinates are cast to float32 (float64 for float64 images): pass float32 boxes
        under mixed precision, float16 cannot hold pixel positions finely.
      size: output side L or (h, w).
    Returns:
      (B, T, h, w, C) (or (B, h, w, C) for (B, 4) boxes), in the images' float dtype. Same values as
      ``TiledImage.read_region(y0, x0, y1, x1, (h, w), level=0)`` on the same pixels.

    The flat gather index ``b * H * W + y * W + x`` is int32: B * H * W must stay below 2**31.
    """
    oh, ow = _as_hw(size)
    images = ops.convert_to_tensor(images)
    boxes = ops.convert_to_tensor(boxes)
    if len(images.shape) != 4:
        raise ValueError(f"images must be (B, H, W, C), got shape {images.shape}.")
    if len(boxes.shape) not in (2, 3) or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (B, T, 4) or (B, 4), got shape {boxes.shape}.")
    single = len(boxes.shape) == 2
    if single:
        boxes = _expand(boxes, 1)
    out_dtype = _float_dtype(images)
    coord_dtype = "float64" if out_dtype == "float64" else "float32"
    if out_dtype != keras.backend.standardize_dtype(images.dtype):
        images = ops.cast(images, out_dtype)
    boxes = ops.cast(boxes, coord_dtype)

    dynamic = ops.shape(images)
    height = images.shape[1] if images.shape[1] is not None else dynamic[1]
    width = images.shape[2] if images.shape[2] is not None else dynamic[2]
    channels = images.shape[3] if images.shape[3] is not None else dynamic[3]
    batch = images.shape[0] if images.shape[0] is not None else dynamic[0]
    height_f = ops.cast(height, coord_dtype) if not isinstance(height, int) else float(height)
    width_f = ops.cast(width, coord_dtype) if not isinstance(width, int) else float(width)

    y0, x0, y1, x1 = ops.unstack(boxes, 4, axis=-1)  # (B, T) each
    ry0, ry1, wy0, wy1 = _axis_taps(y0, y1, oh, height_f, coord_dtype)  # (B, T, oh)
    cx0, cx1, wx0, wx1 = _axis_taps(x0, x1, ow, width_f, coord_dtype)  # (B, T, ow)

    flat = ops.reshape(images, (-1, channels))  # (B * H * W, C)
    offset = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), (-1, 1, 1))
    rows0 = _expand(offset + ry0 * width, -1)  # (B, T, oh, 1)
    rows1 = _expand(offset + ry1 * width, -1)
    cols0, cols1 = _expand(cx0, -2), _expand(cx1, -2)  # (B, T, 1, ow)

    def corner(rows, cols):
        values = tf.gather(flat, rows + cols)  # (B, T, oh, ow, C)
        return values if out_dtype == coord_dtype else ops.cast(values, coord_dtype)

    wx0, wx1 = _expand(wx0, (-2, -1)), _expand(wx1, (-2, -1))  # (B, T, 1, ow, 1)
    wy0, wy1 = _expand(wy0, (-1, -2)), _expand(wy1, (-1, -2))  # (B, T, oh, 1, 1)
    top = corner(rows0, cols0) * wx0 + corner(rows0, cols1) * wx1
    bottom = corner(rows1, cols0) * wx0 + corner(rows1, cols1) * wx1
    out = top * wy0 + bottom * wy1
    if out_dtype != coord_dtype:
        out = ops.cast(out, out_dtype)
    return ops.squeeze(out, 1) if single else out


def _retina_sides(num_scales, scale_factor, base_size, size, sides=None):
    if sides is not None:
        if len(sides) != num_scales:
            raise ValueError(f"sides must give one side per scale ({num_scales}), got {sides!r}.")
        return [_as_pair(side, "sides") for side in sides]
    base_h, base_w = _as_pair(size if base_size is None else base_size, "base_size")
    return [(base_h * float(scale_factor) ** k, base_w * float(scale_factor) ** k) for k in range(num_scales)]


def retina(images, centers, size, num_scales, scale_factor=2.0, base_size=None, concat_channels=False, sides=None):
    """RAM's retina (Mnih et al. 2014): ``num_scales`` patches centred on the same point, patch k of side
    ``base_size * scale_factor**k`` image pixels, each resampled to ``size`` with :func:`crop_and_resize`.

    Args:
      images: (B, H, W, C).
      centers: (B, T, 2) or (B, 2) glimpse centres (y, x) in pixel coordinates (from normalised locations:
        :func:`normalized_to_pixels`).
      size: output side g or (h, w) of every patch.
      num_scales: k, the number of patches.
      scale_factor: each patch's side over the previous one's (RAM: 2).
      base_size: side (number or (h, w)) of the finest patch in image pixels; default ``size`` (the finest patch
        is read at the image's resolution, as in RAM).
      concat_channels: False -> patches stacked on a scale axis; True -> concatenated on channels, scale-major
        (channels [k*C, (k+1)*C) hold scale k).
      sides: explicit patch sides in image pixels, one per scale (numbers or (h, w)), instead of
        ``base_size * scale_factor**k`` (e.g. the Saccader authors' DRAM: fields of view 77, 150, 224).
    Returns:
      (B, T, k, h, w, C), or (B, T, h, w, k*C) with ``concat_channels``; without the T axis for (B, 2) centres.

    Coarse patches are bilinearly point-sampled (no low-pass filter): with ``scale_factor`` 2 each output pixel of
    patch k reads a 2x2 neighbourhood 2**k pixels apart, as a spatial transformer does.
    """
    h, w = _as_hw(size)
    num_scales = int(num_scales)
    if num_scales < 1:
        raise ValueError(f"num_scales must be >= 1, got {num_scales}.")
    centers = ops.convert_to_tensor(centers)
    if len(centers.shape) not in (2, 3) or centers.shape[-1] != 2:
        raise ValueError(f"centers must be (B, T, 2) or (B, 2), got shape {centers.shape}.")
    single = len(centers.shape) == 2
    if single:
        centers = _expand(centers, 1)
    coord_dtype = "float64" if _float_dtype(ops.convert_to_tensor(images)) == "float64" else "float32"
    centers = ops.cast(centers, coord_dtype)
    sides = ops.convert_to_tensor(_retina_sides(num_scales, scale_factor, base_size, (h, w), sides),
                                  dtype=coord_dtype)
    boxes = glimpse_boxes(_expand(centers, 2), sides)  # (B, T, k, 4)
    steps = centers.shape[1] if centers.shape[1] is not None else ops.shape(centers)[1]
    patches = crop_and_resize(images, ops.reshape(boxes, (ops.shape(boxes)[0], -1, 4)), (h, w))
    channels = patches.shape[-1] if patches.shape[-1] is not None else ops.shape(patches)[-1]
    patches = ops.reshape(patches, (-1, steps, num_scales, h, w, channels))
    if concat_channels:
        patches = ops.reshape(ops.transpose(patches, (0, 1, 3, 4, 2, 5)), (-1, steps, h, w, num_scales * channels))
    return ops.squeeze(patches, 1) if single else patches


# ----------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------

class _CoordinateLayer(keras.layers.Layer):
    """Base: no autocast of the call arguments (box/centre coordinates must stay float32 under mixed precision);
    the images are cast to the layer's compute dtype in ``call``."""

    def __init__(self, **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)

    def _images(self, images):
        return ops.cast(images, self.compute_dtype)


@keras.saving.register_keras_serializable(package="saccade_zoo")
class GlimpseSampler(_CoordinateLayer):
    """Bilinear glimpses of pixel boxes: ``call(images, boxes)`` = :func:`crop_and_resize`.

    Args:
      size: output side L or (h, w).
    Call args: images (B, H, W, C); boxes (B, T, 4) or (B, 4) pixel boxes (y0, x0, y1, x1), half-open.
    Returns (B, T, h, w, C) (or (B, h, w, C)) in the layer's compute dtype (images are cast to it; boxes are
    used in float32). No weights.
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = _as_hw(size)

    def call(self, images, boxes):
        return crop_and_resize(self._images(images), boxes, self.size)

    def compute_output_shape(self, images_shape, boxes_shape):
        lead = tuple(boxes_shape[:-1])
        return lead + tuple(self.size) + (images_shape[-1],)

    def compute_output_spec(self, images, boxes):
        return keras.KerasTensor(self.compute_output_shape(images.shape, boxes.shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size))
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class Retina(_CoordinateLayer):
    """RAM's multi-scale retina: ``call(images, centers)`` = :func:`retina`.

    Args:
      size: output side g or (h, w) of each patch.
      num_scales: number of patches k.
      scale_factor: side ratio of consecutive patches (RAM: 2).
      base_size: side of the finest patch in image pixels (number or (h, w)); None = ``size``.
      concat_channels: False -> (B, [T,] k, h, w, C); True -> (B, [T,] h, w, k*C), scale-major channels.
      sides: explicit side of each patch in image pixels (one per scale), overriding scale_factor / base_size.
    Call args: images (B, H, W, C); centers (B, T, 2) or (B, 2) pixel centres (y, x).
    """

    def __init__(self, size, num_scales, scale_factor=2.0, base_size=None, concat_channels=False, sides=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.size = _as_hw(size)
        self.num_scales = int(num_scales)
        if self.num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}.")
        self.scale_factor = float(scale_factor)
        if not self.scale_factor > 0:
            raise ValueError(f"scale_factor must be positive, got {scale_factor}.")
        if base_size is not None:
            pair = _as_pair(base_size, "base_size")
            base_size = pair[0] if pair[0] == pair[1] else list(pair)
        self.base_size = base_size
        self.concat_channels = bool(concat_channels)
        if sides is not None:
            sides = [list(pair) if pair[0] != pair[1] else pair[0]
                     for pair in _retina_sides(self.num_scales, 1.0, None, self.size, list(sides))]
        self.sides = sides

    @property
    def patch_sides(self):
        """[(h, w)] side of each patch in image pixels, finest first."""
        return _retina_sides(self.num_scales, self.scale_factor, self.base_size, self.size, self.sides)

    def call(self, images, centers):
        return retina(self._images(images), centers, self.size, self.num_scales, self.scale_factor,
                      self.base_size, self.concat_channels, self.sides)

    def compute_output_shape(self, images_shape, centers_shape):
        lead = tuple(centers_shape[:-1])
        channels = images_shape[-1]
        if self.concat_channels:
            return lead + tuple(self.size) + (None if channels is None else channels * self.num_scales,)
        return lead + (self.num_scales,) + tuple(self.size) + (channels,)

    def compute_output_spec(self, images, centers):
        return keras.KerasTensor(self.compute_output_shape(images.shape, centers.shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size), num_scales=self.num_scales, scale_factor=self.scale_factor,
                      base_size=self.base_size, concat_channels=self.concat_channels)
        return config


__all__ = ["GlimpseSampler", "Retina", "boxes_to_center_size", "center_size_to_boxes", "crop_and_resize",
           "glimpse_boxes", "normalized_to_pixels", "pixels_to_normalized", "retina"]
