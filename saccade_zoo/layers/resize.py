"""Area (box-filter) resizing as two matrix products: the proxy image of variational saccading.

``tf.image.resize(..., method="area")`` averages the input pixels each output pixel covers, but it converts to
TFLite only through Flex ops. Area resizing is linear and separable: output = Ay @ image @ Ax^T per channel, where
row i of ``Ay`` (out_h x H) holds the fraction of input row r that output row i covers, divided by the output
row's height in input rows (so each row sums to 1). Two batched matrix products are TFLite built-ins (BATCH_MATMUL)
and differentiate like any matmul. Memory: the two matrices (out x in) besides the image.
"""
import numpy as np

import keras
from keras import ops


def area_matrix(n_in, n_out):
    """(n_out, n_in) float64 matrix of area-resampling weights: output sample i covers input interval
    [i * n_in / n_out, (i + 1) * n_in / n_out); its weight on input pixel r is the overlap of [r, r + 1) with that
    interval divided by the interval's length. Rows sum to 1. n_out may exceed n_in (then it is nearest-neighbour
    upsampling with overlaps blended, as TF's "area" method does)."""
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"area_matrix needs positive sizes, got n_in={n_in}, n_out={n_out}.")
    scale = n_in / n_out
    starts = np.arange(n_out)[:, None] * scale
    stops = starts + scale
    pixels = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(stops, pixels + 1) - np.maximum(starts, pixels), 0.0, None)
    return overlap / scale


@keras.saving.register_keras_serializable(package="saccade_zoo")
class AreaResize(keras.layers.Layer):
    """Resize (B, H, W, C) images to (B, h, w, C) by area averaging (see the module docstring).

    Args:
        size: output side or (h, w).
    The input's height and width must be known when the layer is built (the weights are constants of that size).
    Equals ``tf.image.resize(images, size, method="area")`` within float32 rounding (tested).
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or any(int(s) < 1 for s in size):
            raise ValueError(f"AreaResize size must be a positive int or (h, w), got {size}.")
        self.size = tuple(int(s) for s in size)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(f"AreaResize needs (B, H, W, C) images of known height and width, got {input_shape}.")
        self._rows = area_matrix(input_shape[1], self.size[0]).astype("float32")  # (h, H)
        self._cols = area_matrix(input_shape[2], self.size[1]).T.astype("float32")  # (W, w)

    def call(self, images):
        x = ops.transpose(ops.cast(images, self.compute_dtype), (0, 3, 1, 2))  # (B, C, H, W)
        x = ops.matmul(ops.cast(self._rows, x.dtype), x)  # (B, C, h, W)
        x = ops.matmul(x, ops.cast(self._cols, x.dtype))  # (B, C, h, w)
        return ops.transpose(x, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size))
        return config
