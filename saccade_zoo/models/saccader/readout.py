"""Read a classifier's logits map at glimpse locations; turn locations into grid coordinates and pixel boxes."""
import keras
from keras import ops

from saccade_zoo.layers.ops import one_hot


@keras.saving.register_keras_serializable(package="saccade_zoo")
class GlimpseReadout(keras.layers.Layer):
    """Gathers per-glimpse logits from a (B, h, w, C) logits map at flat cell indices (B, T).

    The gather is a one-hot matrix product, which is differentiable in the map, needs no gather op and
    converts to TFLite built-ins. Cell (i, j) of a BagNet with total stride s and receptive field r sees the
    pixels [s*i, s*i + r) x [s*j, s*j + r) of the input (valid convolutions, so no offset).

    Returns a dict:
        step_logits: (B, T, C) logits of each glimpse.
        logits: (B, C) their mean over the T glimpses (the prediction, paper section 3.1).
        locations: (B, T, 2) int32 (row, col) on the feature grid.
        boxes: (B, T, 4) float32 pixel boxes (y0, x0, y1, x1), half-open: y1 = y0 + receptive_field.

    Mixed precision: ``logits`` and ``step_logits`` come out in the layer's compute dtype (the gather is exact
    in any float dtype); ``boxes`` are pixel coordinates and stay float32 under every policy (bfloat16 holds
    integers exactly only up to 256). `Saccader` and `PolicyClassifier` build their readout with a float32
    policy: it is their output head, so their class scores are float32 whatever the model's policy.
    """

    def __init__(self, stride, receptive_field, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)
        self.receptive_field = int(receptive_field)

    def call(self, logits_map, locations):
        h, w, classes = logits_map.shape[1], logits_map.shape[2], logits_map.shape[3]
        flat_map = ops.reshape(logits_map, (-1, h * w, classes))
        locations = ops.cast(locations, "int32")
        selector = one_hot(locations, h * w, dtype=logits_map.dtype)
        step_logits = ops.matmul(selector, flat_map)
        rows = ops.floor_divide(locations, w)
        cols = locations - rows * w
        grid = ops.stack([rows, cols], axis=-1)
        y0 = ops.cast(rows * self.stride, "float32")
        x0 = ops.cast(cols * self.stride, "float32")
        size = float(self.receptive_field)
        boxes = ops.stack([y0, x0, y0 + size, x0 + size], axis=-1)
        return {
            "logits": ops.mean(step_logits, axis=1),
            "step_logits": step_logits,
            "locations": grid,
            "boxes": boxes,
        }

    def compute_output_shape(self, logits_map_shape, locations_shape):
        batch, steps, classes = logits_map_shape[0], locations_shape[1], logits_map_shape[3]
        return {
            "logits": (batch, classes),
            "step_logits": (batch, steps, classes),
            "locations": (batch, steps, 2),
            "boxes": (batch, steps, 4),
        }

    def compute_output_spec(self, logits_map, locations):
        shapes = self.compute_output_shape(logits_map.shape, locations.shape)
        dtypes = {"logits": self.compute_dtype, "step_logits": self.compute_dtype, "locations": "int32",
                  "boxes": "float32"}
        return {k: keras.KerasTensor(shapes[k], dtype=dtypes[k]) for k in shapes}

    def get_config(self):
        config = super().get_config()
        config.update(stride=self.stride, receptive_field=self.receptive_field)
        return config
