"""The Saccader cell (Elsayed et al. 2019, Eqs. 1-3)."""
import math

import keras
import tensorflow as tf
from keras import ops

# A visited cell's score is set to the lowest score of its row minus MASK_MARGIN (see `mask_visited`).
MASK_MARGIN = 32.0


def argmax_last(x):
    """Argmax over the last axis as int32.

    Written with `tf.math.argmax` on purpose: `keras.ops.argmax` on floats emits a BitwiseAnd that
    TFLite's built-in op set lacks, while `tf.math.argmax` converts to the built-in ARG_MAX.
    """
    return tf.math.argmax(x, axis=-1, output_type=tf.int32)


def one_hot(indices, depth, dtype="float32"):
    """One-hot encoding written as ``cast(indices[..., None] == arange(depth))``.

    Same values as `keras.ops.one_hot`, but TFLite's full-int8 quantizer mis-quantizes the ONE_HOT op's
    off_value (the zeros come out as 0.5 after quantization), which corrupted the glimpse state and readout
    of int8 exports; EQUAL + CAST quantize correctly.
    """
    positions = ops.arange(int(depth), dtype="int32")
    return ops.cast(ops.equal(ops.expand_dims(ops.cast(indices, "int32"), -1), positions), dtype)


def mask_visited(scores, visited):
    """Scores (B, N) with the visited cells (bool (B, N)) pushed below every other cell.

    The paper subtracts 10^5 C (Eqs. 1 and 3). Here a visited cell's score becomes ``min_n(scores) - 32``.
    In float the two agree to within float32 rounding: in each softmax a masked cell gets weight <= e^-32
    (~1e-14) instead of 0, and no argmax changes, Gumbel-max draws included (the Gumbel noise of
    `saccade_zoo.training.sampling` spans less than 19, so a masked cell can never win).

    Why deviate: an int8 tensor has one scale for all its values. A tensor holding -10^5 gets a step of about
    800, so every unvisited cell rounds to the same value and a full-int8 TFLite export cannot tell free cells
    apart from the second glimpse on (top-1 agreement with Keras fell to 0.36 on a trained model, 0 % identical
    trajectories). The masked tensor here spans only 32 more than the scores themselves.
    """
    floor = ops.min(scores, axis=-1, keepdims=True) - MASK_MARGIN
    return ops.where(visited, floor, scores)


@keras.saving.register_keras_serializable(package="saccade_zoo")
class SaccaderCell(keras.layers.Layer):
    """Proposes a sequence of glimpse locations on a feature grid, never revisiting a cell.

    For the mixed what/where features F (B, h, w, d) and state C (visited cells, zeros at t = 0), step t:

    - Eq. 1: G = (F . a) / sqrt(d) - 1e5 C; spatial softmax over the h*w cells (a: a learned d-vector).
    - Eq. 2: h = sum_ij F_ij G~_ij; channel softmax -> h~.
    - Eq. 3: R = sum_k F_ijk h~_k - 1e5 C; the policy is softmax(R) over the cells.
    - Masking deviates in form, not in value: a visited cell's score is set to the row minimum - 32 instead of
      lowered by 1e5 (see `mask_visited`; equal to float32 rounding, and int8-quantizable).
    - Location: sampled from the policy when `training=True`, argmax otherwise, or the given
      `forced_locations` (teacher forcing, used by location pretraining, paper Eq. 5). With
      `sampling_noise` (Gumbel noise, (B, T, h*w)) the sample is the Gumbel-max argmax(R + noise), an exact
      draw from softmax(R) whose randomness the caller controls (the train steps key it on the example, so
      a step gives the same samples on 1 or N replicas and after a resume).
    - C <- C or onehot(location) (a boolean state).

    Because chosen cells are masked, a trajectory never repeats a cell; so
    `num_glimpses` may not exceed h*w.

    Args:
        num_glimpses: default number of steps T (can be overridden per call).
        seed: seed of the sampling stream used in training.

    Call args:
        features: (B, h, w, d) float.
        forced_locations: optional (B, T) int flat cell indices (row * w + col) to follow.
        num_glimpses: optional override of T.
        sampling_noise: optional (B, >=T, h*w) Gumbel noise used instead of the layer's own sampler.

    Returns:
        dict with `locations` (B, T) int32 flat cell indices and `location_logits` (B, T, h*w), the
        masked logits R of each step (log-softmax of them is the log-policy).
    """

    def __init__(self, num_glimpses=6, seed=None, attention_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if int(num_glimpses) < 1:
            raise ValueError(f"SaccaderCell num_glimpses must be >= 1, got {num_glimpses!r}.")
        self.num_glimpses = int(num_glimpses)
        self.seed = seed
        self.attention_initializer = keras.initializers.get(attention_initializer)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, features_shape):
        self.attention_vector = self.add_weight(
            shape=(features_shape[-1],),
            initializer=self.attention_initializer,
            name="attention_vector",
        )

    def call(self, features, forced_locations=None, num_glimpses=None, sampling_noise=None, training=None):
        steps = self.num_glimpses if num_glimpses is None else int(num_glimpses)
        h, w, d = features.shape[1], features.shape[2], features.shape[3]
        cells = h * w
        if steps > cells:
            raise ValueError(
                f"{steps} glimpses requested but the feature grid has only {h}x{w} = {cells} cells; "
                "the Saccader never revisits a cell."
            )
        if forced_locations is not None and forced_locations.shape[1] is not None:
            if forced_locations.shape[1] < steps:
                raise ValueError(
                    f"forced_locations has {forced_locations.shape[1]} steps, fewer than the {steps} glimpses."
                )
        flat = ops.reshape(features, (-1, cells, d))
        spatial_scores = ops.einsum("bnd,d->bn", flat, self.attention_vector) / math.sqrt(d)
        visited = ops.zeros_like(spatial_scores, dtype="bool")  # the state C
        locations, logits = [], []
        for t in range(steps):
            spatial = ops.softmax(mask_visited(spatial_scores, visited), axis=-1)  # Eq. 1
            pooled = ops.einsum("bn,bnd->bd", spatial, flat)  # Eq. 2
            channel = ops.softmax(pooled, axis=-1)
            location_logits = mask_visited(ops.einsum("bnd,bd->bn", flat, channel), visited)  # Eq. 3
            if forced_locations is not None:
                location = ops.cast(forced_locations[:, t], "int32")
            elif sampling_noise is not None:
                location = argmax_last(location_logits + sampling_noise[:, t])
            elif training:
                location = keras.random.categorical(
                    location_logits, 1, seed=self.seed_generator, dtype="int32"
                )[:, 0]
            else:
                location = argmax_last(location_logits)
            visited = ops.logical_or(visited, one_hot(location, cells, dtype="bool"))
            locations.append(location)
            logits.append(location_logits)
        return {"locations": ops.stack(locations, axis=1), "location_logits": ops.stack(logits, axis=1)}

    def compute_output_spec(self, features, forced_locations=None, num_glimpses=None, sampling_noise=None,
                            training=None):
        steps = self.num_glimpses if num_glimpses is None else int(num_glimpses)
        batch, h, w = features.shape[0], features.shape[1], features.shape[2]
        return {
            "locations": keras.KerasTensor((batch, steps), dtype="int32"),
            "location_logits": keras.KerasTensor((batch, steps, h * w), dtype=features.dtype),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            num_glimpses=self.num_glimpses,
            seed=self.seed,
            attention_initializer=keras.initializers.serialize(self.attention_initializer),
        )
        return config
