"""The Saccader cell (Elsayed et al. 2019, Eqs. 1-3)."""
import math

import keras
from keras import ops

from saccade_zoo.layers.ops import argmax_last, mask_visited, one_hot


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
        masked logits R of each step (log-softmax of them is the log-policy), in the layer's compute dtype.

    Mixed precision: the layer follows its dtype policy (float32 attention vector, `location_logits` in the
    compute dtype), but computes the scores, the masking, both softmaxes and the choice of location in float32,
    so MASK_MARGIN stays exact and no argmax differs from float32 because of rounding of the masked scores.
    Like every float input, `sampling_noise` is autocast to the compute dtype by Keras first. `Saccader` runs
    its cell with a float32 policy (the log-policy feeds REINFORCE; the cell costs little next to the BagNet).
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
        # The contractions over F run in the compute dtype; scores, masks, softmaxes and the location choice run
        # in float32 (no-op casts under a float32 policy): the mask margin and the argmax stay exact under
        # mixed_float16 / mixed_bfloat16, and softmax sums over up to h*w cells do not lose precision.
        spatial_scores = ops.cast(ops.einsum("bnd,d->bn", flat, self.attention_vector) / math.sqrt(d), "float32")
        visited = ops.zeros_like(spatial_scores, dtype="bool")  # the state C
        locations, logits = [], []
        for t in range(steps):
            spatial = ops.softmax(mask_visited(spatial_scores, visited), axis=-1)  # Eq. 1
            pooled = ops.einsum("bn,bnd->bd", ops.cast(spatial, flat.dtype), flat)  # Eq. 2
            channel = ops.softmax(ops.cast(pooled, "float32"), axis=-1)
            scores = ops.cast(ops.einsum("bnd,bd->bn", flat, ops.cast(channel, flat.dtype)), "float32")
            location_logits = mask_visited(scores, visited)  # Eq. 3
            if forced_locations is not None:
                location = ops.cast(forced_locations[:, t], "int32")
            elif sampling_noise is not None:
                location = argmax_last(location_logits + ops.cast(sampling_noise[:, t], "float32"))
            elif training:
                location = keras.random.categorical(
                    location_logits, 1, seed=self.seed_generator, dtype="int32"
                )[:, 0]
            else:
                location = argmax_last(location_logits)
            visited = ops.logical_or(visited, one_hot(location, cells, dtype="bool"))
            locations.append(location)
            logits.append(location_logits)
        return {
            "locations": ops.stack(locations, axis=1),
            "location_logits": ops.cast(ops.stack(logits, axis=1), self.compute_dtype),
        }

    def compute_output_shape(self, features_shape, forced_locations_shape=None, num_glimpses=None,
                             sampling_noise_shape=None):
        steps = self.num_glimpses if num_glimpses is None else int(num_glimpses)
        batch, h, w = features_shape[0], features_shape[1], features_shape[2]
        cells = None if h is None or w is None else h * w
        return {"locations": (batch, steps), "location_logits": (batch, steps, cells)}

    def compute_output_spec(self, features, forced_locations=None, num_glimpses=None, sampling_noise=None,
                            training=None):
        shapes = self.compute_output_shape(features.shape, num_glimpses=num_glimpses)
        return {
            "locations": keras.KerasTensor(shapes["locations"], dtype="int32"),
            "location_logits": keras.KerasTensor(shapes["location_logits"], dtype=self.compute_dtype),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            num_glimpses=self.num_glimpses,
            seed=self.seed,
            attention_initializer=keras.initializers.serialize(self.attention_initializer),
        )
        return config
