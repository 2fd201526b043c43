"""Engineered glimpse policies: the baselines of the Saccader paper (section 4.1)."""
import numpy as np

import keras
from keras import ops

from saccade_zoo.layers.ops import argmax_last, one_hot

POLICIES = ("random", "center", "ordered_logits", "sobel_mean", "sobel_var")

# ITU-R 601 luma weights, as tf.image.rgb_to_grayscale uses.
_LUMA = (0.2989, 0.5870, 0.1140)
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype="float32")


def center_order(height, width):
    """Flat cell indices of an h x w grid sorted by distance to the grid centre (ties: row-major)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    dist = (rows - (height - 1) / 2.0) ** 2 + (cols - (width - 1) / 2.0) ** 2
    return np.argsort(dist.ravel(), kind="stable").astype("int32")


@keras.saving.register_keras_serializable(package="saccade_zoo")
class EngineeredPolicy(keras.layers.Layer):
    """Picks T glimpse cells with a fixed rule; returns (B, T) int32 flat cell indices.

    Policies (paper section 4.1 and the reference code):
    - ``random``: T distinct cells drawn uniformly (no revisits, like the learned policy).
    - ``center``: the middle cell, then the distinct cells nearest to it (ties row-major). The reference code reads
      the one middle cell at every step, so its accuracy cannot change with the number of glimpses and its
      coverage stays at one glimpse. We read a new cell at each step instead, like every other policy here (no
      revisits), so that "accuracy vs glimpses" compares policies at equal numbers of distinct glimpses: this is
      the centre-bias baseline a user expects, and at T = 1 both are the same.
    - ``ordered_logits``: the top-T cells of the *predicted* class's logits map (predicted class = argmax
      of the spatially averaged logits). No suppression, so glimpses cluster (as the paper notes).
    - ``sobel_mean`` / ``sobel_var``: grey image -> Sobel gradient magnitude -> mean (or unbiased variance,
      n = r*r) over each cell's r x r receptive field at the backbone's stride; top-T cells. The image is padded by
      reflection before the 3x3 Sobel kernels, as `tf.image.sobel_edges` does: zero padding would make false
      edges along the border of standardised images (whose background is not 0).

    Call args: ``logits_map`` (B, h, w, C) and ``images`` (B, H, W, channels).

    Mixed precision: the output is int32 under every dtype policy. The layer does not autocast its inputs
    (``autocast=False``: float32 images are not rounded to float16 / bfloat16 before the Sobel statistics) and
    scores every policy in float32, so given the same inputs it picks the same cells under any policy.
    """

    def __init__(self, policy, num_glimpses, stride, receptive_field, seed=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if policy not in POLICIES:
            raise ValueError(f"Unknown policy {policy!r}; choose one of {', '.join(POLICIES)}.")
        self.policy = policy
        self.num_glimpses = int(num_glimpses)
        self.stride = int(stride)
        self.receptive_field = int(receptive_field)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if policy == "random" else None

    def call(self, logits_map, images):
        h, w = logits_map.shape[1], logits_map.shape[2]
        cells = h * w
        if self.num_glimpses > cells:
            raise ValueError(f"{self.num_glimpses} glimpses requested but the grid has only {h}x{w} = {cells} cells.")
        batch = ops.shape(logits_map)[0]
        if self.policy == "center":
            order = ops.convert_to_tensor(center_order(h, w)[: self.num_glimpses])
            return ops.broadcast_to(order[None, :], (batch, self.num_glimpses))
        if self.policy == "random":
            scores = keras.random.uniform((batch, cells), seed=self.seed_generator)
        elif self.policy == "ordered_logits":
            flat = ops.reshape(ops.cast(logits_map, "float32"), (-1, cells, logits_map.shape[-1]))
            predicted = argmax_last(ops.mean(flat, axis=1))
            selector = one_hot(predicted, logits_map.shape[-1], dtype=flat.dtype)
            scores = ops.einsum("bnc,bc->bn", flat, selector)
        else:
            scores = ops.reshape(self.sobel_map(images, h, w), (-1, cells))
        _, indices = ops.top_k(scores, self.num_glimpses)
        return ops.cast(indices, "int32")

    def sobel_map(self, images, h, w):
        """Per-cell Sobel magnitude mean or variance, (B, h, w)."""
        images = ops.cast(images, "float32")
        if images.shape[-1] == 3:
            grey = ops.sum(images * ops.convert_to_tensor(_LUMA, dtype="float32"), axis=-1, keepdims=True)
        else:
            grey = ops.mean(images, axis=-1, keepdims=True)
        kernel = np.stack([_SOBEL_X, _SOBEL_X.T], axis=-1)[:, :, None, :]  # (3, 3, 1, 2)
        grey = ops.pad(grey, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")  # as tf.image.sobel_edges
        grads = ops.conv(grey, ops.convert_to_tensor(kernel), padding="valid")
        magnitude = ops.sqrt(ops.sum(ops.square(grads), axis=-1, keepdims=True))
        r, s = self.receptive_field, self.stride
        mean = ops.average_pool(magnitude, r, strides=s, padding="valid")
        if self.policy == "sobel_var":
            n = float(r * r)
            second = ops.average_pool(ops.square(magnitude), r, strides=s, padding="valid")
            stat = (second - ops.square(mean)) * (n / (n - 1.0))
        else:
            stat = mean
        return stat[:, :h, :w, 0]

    def compute_output_shape(self, logits_map_shape, images_shape):
        return (logits_map_shape[0], self.num_glimpses)

    def compute_output_spec(self, logits_map, images):
        return keras.KerasTensor(self.compute_output_shape(logits_map.shape, images.shape), dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(
            policy=self.policy,
            num_glimpses=self.num_glimpses,
            stride=self.stride,
            receptive_field=self.receptive_field,
            seed=self.seed,
        )
        return config
