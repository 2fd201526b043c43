"""Spatial-transformer glimpses (Variational Saccading, Ramapuram et al.): the full-image spatial transformer and
the localized one, which computes the same function from the glimpse's neighbourhood only.

The paper's glimpse latent is ``z = (s, x, y)``, the affine transform ``[[s, 0, x], [0, s, y]]`` of a spatial
transformer (Jaderberg et al. 2015) that cuts an ``L x L`` glimpse (reference ``L = 64``) from the image. In the
normalised coordinates of :mod:`saccade_zoo.layers.glimpse` (-1 = top/left image edge, +1 = bottom/right edge,
``align_corners=False``), ``s`` is the window's half-side in [-1, 1] units, i.e. the window side as a fraction of
the image side, and ``(x, y)`` is the window centre: the transformer reads the normalised box
``(y - s, x - s, y + s, x + s)``, which is ``s * H`` pixels tall and ``s * W`` pixels wide (a window is square in
normalised units, so non-square images give non-square pixel windows). :func:`affine_to_boxes` /
:func:`boxes_to_affine` convert between ``z`` and the pixel boxes ``(y0, x0, y1, x1)`` the zoo's models return.

* :func:`spatial_transformer` (layer :class:`SpatialTransformer`) is the plain full-image transformer of the
  paper's appendix 7.2: an affine sampling grid over the ``L x L`` output and bilinear sampling with dense,
  separable weights over the whole image (``out = Wy @ image @ Wx^T`` per channel, ``Wy`` of shape ``(L, H)``).
  Memory is O(B * T * L * (H + W) * C) besides the image. It is written independently of
  :func:`~saccade_zoo.layers.glimpse.crop_and_resize` and serves as the reference (and for small images).
* :class:`LocalizedSpatialTransformer` (LST) computes the same function with
  :func:`~saccade_zoo.layers.glimpse.crop_and_resize`: each output pixel gathers only its four bilinear
  neighbours, so memory is O(B * T * L * L * C) whatever the image size; no grid or mask of the image's size is
  built.

Why the paper's LST lost and ours does not: the paper's LST (appendices 7.3 / 7.5) cuts from the image exactly
the region covered by the affine grid (the grid's support), then runs the spatial transformer on that crop. It
reached 68% where the full-image ST reached 97% (29 points lost): a bilinear sampler reads, for every sample
point, the two pixel centres around it on each axis, so the samples at the window's border need the pixels up to
one pixel *outside* the grid's support. Cut at the support, the border samples blend with zero padding (or a
shifted grid) instead of the image, and the glimpse is not the transformer's glimpse. ``crop_and_resize`` gathers
the support plus that one-pixel ring (it indexes the true neighbours of each sample point in the full image), so
our LST computes the same function as the full-image ST: values within 1e-5 in float32 on random z, gradients
equal in float64 (tests/test_spatial_transformer.py).

Coordinates are computed in float32 (float64 for float64 inputs) under every dtype policy: the layers do not
autocast ``z`` (pixel positions need float32 precision); the images are cast to the layer's compute dtype.
"""
import keras
from keras import ops

from saccade_zoo.layers.glimpse import (_as_hw, _CoordinateLayer, _expand, _float_dtype, crop_and_resize,
                                        normalized_to_pixels, pixels_to_normalized)
from saccade_zoo.layers.pyramid import pyramid_crop_and_resize


# ----------------------------------------------------------------------------------------------------------------
# Coordinate conversions
# ----------------------------------------------------------------------------------------------------------------

def _coord_dtype(*tensors):
    """float64 if any input is float64, else float32 (half-precision coordinates cannot hold pixel positions)."""
    return "float64" if any(_float_dtype(t) == "float64" for t in tensors) else "float32"


def _check_z(z):
    if len(z.shape) not in (2, 3) or z.shape[-1] != 3:
        raise ValueError(f"z must be (B, T, 3) or (B, 3) affine parameters (s, x, y), got shape {z.shape}.")


def _check_images(images):
    if len(images.shape) != 4:
        raise ValueError(f"images must be (B, H, W, C), got shape {images.shape}.")


def affine_to_boxes(z, image_size):
    """Spatial-transformer parameters -> pixel boxes.

    Args:
      z: (..., 3) float ``(s, x, y)``: the affine ``[[s, 0, x], [0, s, y]]`` in normalised coordinates (``s`` =
        window side as a fraction of the image side, i.e. half-width in [-1, 1] units; ``(x, y)`` = window centre
        in [-1, 1]).
      image_size: (H, W) as Python ints or scalar tensors (e.g. ``ops.shape(images)[1:3]``).
    Returns:
      (..., 4) pixel boxes ``(y0, x0, y1, x1)``: the normalised box ``(y - s, x - s, y + s, x + s)`` in pixels, of
      height ``s * H`` and width ``s * W``. float32 (float64 for float64 ``z``).
    """
    z = ops.convert_to_tensor(z)
    if not z.shape or z.shape[-1] != 3:
        raise ValueError(f"z must hold (s, x, y) on its last axis, got shape {z.shape}.")
    z = ops.cast(z, _coord_dtype(z))
    s, x, y = ops.unstack(z, 3, axis=-1)
    return normalized_to_pixels(ops.stack([y - s, x - s, y + s, x + s], axis=-1), image_size)


def boxes_to_affine(boxes, image_size):
    """Pixel boxes -> spatial-transformer parameters (inverse of :func:`affine_to_boxes`).

    Args:
      boxes: (..., 4) pixel boxes ``(y0, x0, y1, x1)``.
      image_size: (H, W) as Python ints or scalar tensors.
    Returns:
      (..., 3) ``(s, x, y)``. A transformer window is square in normalised units; for a box that is not, ``s`` is
      the mean of its two normalised half-sides (exact for the boxes of :func:`affine_to_boxes`).
    """
    boxes = ops.convert_to_tensor(boxes)
    if not boxes.shape or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must hold (y0, x0, y1, x1) on their last axis, got shape {boxes.shape}.")
    boxes = ops.cast(boxes, _coord_dtype(boxes))
    y0, x0, y1, x1 = ops.unstack(pixels_to_normalized(boxes, image_size), 4, axis=-1)
    return ops.stack([((y1 - y0) + (x1 - x0)) * 0.25, (x0 + x1) * 0.5, (y0 + y1) * 0.5], axis=-1)


def _image_size(images):
    """(H, W): static Python ints where known, scalar tensors otherwise."""
    dynamic = ops.shape(images)
    return tuple(images.shape[i] if images.shape[i] is not None else dynamic[i] for i in (1, 2))


# ----------------------------------------------------------------------------------------------------------------
# The full-image spatial transformer (the reference)
# ----------------------------------------------------------------------------------------------------------------

def _dense_weights(centre, scale, out_len, limit, dtype):
    """Dense bilinear weights of one axis: (B, T, out_len, limit).

    centre, scale: (B, T) normalised window centre and half-side. The affine grid (align_corners=False) puts output
    sample k at the normalised position ``centre + scale * ((2k + 1) / out_len - 1)``, i.e. at the pixel-centre
    index ``pos = (p + 1) * limit / 2 - 0.5``; pixel ``i`` of the image gets the weight ``max(0, 1 - |pos - i|)``.
    Only in-image pixels have a weight, so the neighbours outside the image read as zeros (zero padding).
    """
    grid = (2.0 * ops.arange(out_len, dtype=dtype) + 1.0) / float(out_len) - 1.0  # (out_len,)
    normalised = _expand(centre, -1) + _expand(scale, -1) * grid  # (B, T, out_len)
    limit_f = ops.cast(limit, dtype)
    pos = (normalised + 1.0) * (limit_f * 0.5) - 0.5
    pixels = ops.cast(ops.arange(limit), dtype)  # (limit,)
    return ops.maximum(0.0, 1.0 - ops.abs(_expand(pos, -1) - pixels))


def spatial_transformer(images, z, size):
    """The plain full-image spatial transformer ``[[s, 0, x], [0, s, y]]`` (Jaderberg et al. 2015; Variational
    Saccading, appendix 7.2): affine grid, bilinear sampling, ``align_corners=False``, zero padding.

    Args:
      images: (B, H, W, C) (any float dtype; integer images are read as float32 values, unscaled).
      z: (B, T, 3) or (B, 3) float ``(s, x, y)`` (see :func:`affine_to_boxes`); row b transforms image b.
      size: output side L or (h, w).
    Returns:
      (B, T, h, w, C) (or (B, h, w, C) for (B, 3) z) in the images' float dtype (computed in float32, float64
      for float64 images).

    Dense separable weights over the whole image: ``Wy`` (B, T, h, H) and ``Wx`` (B, T, w, W), then
    ``out = Wy @ image @ Wx^T`` per channel. Memory O(B * T * (h * H + w * W + h * W * C)) besides the image;
    differentiable in ``z`` and the images. The same function as :class:`LocalizedSpatialTransformer`, which
    should be preferred for large images.
    """
    oh, ow = _as_hw(size)
    images = ops.convert_to_tensor(images)
    z = ops.convert_to_tensor(z)
    _check_images(images)
    _check_z(z)
    single = len(z.shape) == 2
    if single:
        z = _expand(z, 1)
    out_dtype = _float_dtype(images)
    coord_dtype = "float64" if out_dtype == "float64" else "float32"
    if keras.backend.standardize_dtype(images.dtype) != coord_dtype:
        images = ops.cast(images, coord_dtype)
    z = ops.cast(z, coord_dtype)
    height, width = _image_size(images)
    s, x, y = ops.unstack(z, 3, axis=-1)  # (B, T) each
    weights_y = _dense_weights(y, s, oh, height, coord_dtype)  # (B, T, oh, H)
    weights_x = _dense_weights(x, s, ow, width, coord_dtype)  # (B, T, ow, W)
    rows = ops.einsum("btih,bhwc->btiwc", weights_y, images)  # (B, T, oh, W, C)
    out = ops.einsum("btiwc,btjw->btijc", rows, weights_x)  # (B, T, oh, ow, C)
    if out_dtype != coord_dtype:
        out = ops.cast(out, out_dtype)
    return ops.squeeze(out, 1) if single else out


def localized_spatial_transformer(images, z, size, levels=1):
    """The same function as :func:`spatial_transformer`, from the glimpse's bilinear support only:
    ``crop_and_resize(images, affine_to_boxes(z, (H, W)), size)``. Memory O(B * T * h * w * C).

    ``levels`` > 1: each glimpse is sampled from the level of the images' pyramid that
    :func:`saccade_zoo.layers.pyramid.glimpse_levels` picks for its window (a window >= 2 x the glimpse side reads
    a coarser, box-filtered level: what a read from a pyramid TIFF returns), see
    :func:`~saccade_zoo.layers.pyramid.pyramid_crop_and_resize`. ``levels=1`` is the plain transformer's function."""
    images = ops.convert_to_tensor(images)
    z = ops.convert_to_tensor(z)
    _check_images(images)
    _check_z(z)
    _as_hw(size)
    boxes = affine_to_boxes(z, _image_size(images))
    if levels == 1:
        return crop_and_resize(images, boxes, size)
    return pyramid_crop_and_resize(images, boxes, size, levels)


# ----------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------

class _AffineGlimpseLayer(_CoordinateLayer):
    """Base of the two transformer layers: ``call(images, z)``, shapes, config, boxes."""

    _sample = None  # staticmethod (images, z, size) -> glimpses

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = _as_hw(size)

    def call(self, images, z):
        return type(self)._sample(self._images(images), z, self.size)

    def boxes(self, z, image_size):
        """The pixel boxes ``(y0, x0, y1, x1)`` the glimpses of ``z`` read: :func:`affine_to_boxes` (float32)."""
        return affine_to_boxes(z, image_size)

    def compute_output_shape(self, images_shape, z_shape):
        images_shape, z_shape = tuple(images_shape), tuple(z_shape)
        if len(images_shape) != 4:
            raise ValueError(f"images must be (B, H, W, C), got shape {images_shape}.")
        if len(z_shape) not in (2, 3) or z_shape[-1] != 3:
            raise ValueError(f"z must be (B, T, 3) or (B, 3) affine parameters (s, x, y), got shape {z_shape}.")
        return z_shape[:-1] + tuple(self.size) + (images_shape[-1],)

    def compute_output_spec(self, images, z):
        return keras.KerasTensor(self.compute_output_shape(images.shape, z.shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size))
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class LocalizedSpatialTransformer(_AffineGlimpseLayer):
    """Spatial-transformer glimpses from the glimpse's neighbourhood only (Variational Saccading's LST, done so
    that it equals the full-image transformer): ``call(images, z)`` =
    ``crop_and_resize(images, affine_to_boxes(z, (H, W)), size)``.

    Args:
      size: output side L (the paper: 64) or (h, w).
      levels: pyramid levels to sample from (1: the full-resolution image only, the paper's function; more: a
        glimpse whose window is >= 2 x L reads a box-filtered coarser level, as a read from a pyramid TIFF does,
        see :func:`localized_spatial_transformer`).
    Call args: images (B, H, W, C); z (B, T, 3) or (B, 3) float ``(s, x, y)`` = affine ``[[s, 0, x], [0, s, y]]``
    in normalised coordinates (used in float32, never autocast).
    Returns (B, T, h, w, C) (or (B, h, w, C)) in the layer's compute dtype. ``boxes(z, image_size)`` gives the
    pixel boxes read. No weights. Memory O(B * T * h * w * C): only the bilinear support of the sampling grid is
    gathered.
    """

    _sample = staticmethod(localized_spatial_transformer)

    def __init__(self, size, levels=1, **kwargs):
        super().__init__(size, **kwargs)
        self.levels = int(levels)
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}.")

    def call(self, images, z):
        return localized_spatial_transformer(self._images(images), z, self.size, self.levels)

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels)
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class SpatialTransformer(_AffineGlimpseLayer):
    """The plain full-image spatial transformer: ``call(images, z)`` = :func:`spatial_transformer`. Same
    interface and values as :class:`LocalizedSpatialTransformer`, memory O(B * T * L * (H + W) * C): for small
    images and as the reference."""

    _sample = staticmethod(spatial_transformer)


__all__ = ["LocalizedSpatialTransformer", "SpatialTransformer", "affine_to_boxes", "boxes_to_affine",
           "localized_spatial_transformer", "spatial_transformer"]
