"""Layers of the recurrent attention models (RAM; DRAM reuses the location policy and the state helpers).

RAM (Mnih et al. 2014, section 3 and 4): a glimpse sensor (the retina: `saccade_zoo.layers.glimpse.Retina`, the
zoo's one sampler) around a location l in [-1, 1]^2, a glimpse network that combines what (the retina's patches)
and where (l), a recurrent core and a location network that emits the mean of a Gaussian location policy.
"""
import keras
from keras import ops

from saccade_zoo.layers.glimpse import Retina, normalized_to_pixels


def _dense(units, name, dtype, activation=None):
    return keras.layers.Dense(units, activation=activation, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="saccade_zoo")
class Zeros(keras.layers.Layer):
    """(B, d) zeros for each of ``dims``, with the batch size of the input: the first location (the image centre,
    l = (0, 0)) and the zero initial states of the recurrent layers. No weights."""

    def __init__(self, dims, **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.dims = tuple(int(d) for d in dims)

    def call(self, x):
        batch = ops.shape(x)[0]
        return [ops.zeros((batch, d), dtype="float32") for d in self.dims]

    def compute_output_spec(self, x):
        return [keras.KerasTensor((x.shape[0], d), dtype="float32") for d in self.dims]

    def get_config(self):
        config = super().get_config()
        config.update(dims=list(self.dims))
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class RandomLocations(keras.layers.Layer):
    """Uniform random glimpse locations in [-1, 1]^2, (B, T, 2): the "random glimpses" baseline of the RAM paper
    (Table 2: the same network given locations drawn at random instead of by its policy). Inference draws them
    statelessly from ``seed`` (default 0): the locations do not depend on the image, and a call is reproducible
    (row i of every batch gets the same draw), so a saved and reloaded model answers the same. Training passes
    keyed draws instead, fresh for every example and step (`RecurrentAttentionModel`).
    """

    def __init__(self, num_glimpses, seed=None, **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.num_glimpses, self.seed = int(num_glimpses), seed

    def call(self, images):
        batch = ops.shape(images)[0]
        return keras.random.uniform((batch, self.num_glimpses, 2), -1.0, 1.0, seed=int(self.seed or 0))

    def compute_output_spec(self, images):
        return keras.KerasTensor((images.shape[0], self.num_glimpses, 2), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(num_glimpses=self.num_glimpses, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class LocationNetwork(keras.layers.Layer):
    """The location policy's mean: ``tanh(Linear(h))`` in [-1, 1]^2 (RAM's f_l; the tanh keeps it in the image),
    float32 (it feeds the Gaussian log-probabilities of REINFORCE). The policy is N(mean, std^2 I) with a fixed
    std held by the model."""

    def __init__(self, **kwargs):
        kwargs.pop("dtype", None)
        super().__init__(dtype="float32", **kwargs)
        self.dense = _dense(2, "emission", "float32")

    def build(self, input_shape):
        self.dense.build((None, input_shape[-1]))

    def call(self, h):
        return ops.tanh(self.dense(ops.cast(h, "float32")))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)


@keras.saving.register_keras_serializable(package="saccade_zoo")
class GlimpseNetwork(keras.layers.Layer):
    """RAM's glimpse network f_g (Mnih et al. 2014, section 4): the retina's k patches of g x g around l,

        h_g = ReLU(Linear(retina(x, l)))        (``glimpse_units``, 128 in the paper)
        h_l = ReLU(Linear(l))                   (``location_units``, 128)
        g   = ReLU(Linear(h_g) + Linear(h_l))   (``units``, 256)

    Args:
        size: g, the side every patch is resampled to (12 on cluttered MNIST).
        num_scales: k patches (3 on 60 x 60, 4 on 100 x 100), each ``scale_factor`` (2) times wider than the last,
            the finest of side g image pixels.
        glimpse_units, location_units, units: widths above.
    Call args: images (B, H, W, C), locations (B, 2) normalised (y, x) in [-1, 1] (-1: top/left edge).
    Returns (B, units).
    """

    def __init__(self, size=12, num_scales=3, scale_factor=2.0, glimpse_units=128, location_units=128, units=256,
                 **kwargs):
        super().__init__(**kwargs)
        self.size, self.num_scales, self.scale_factor = int(size), int(num_scales), float(scale_factor)
        self.glimpse_units, self.location_units, self.units = int(glimpse_units), int(location_units), int(units)
        policy = self.dtype_policy
        self.retina = Retina(self.size, self.num_scales, self.scale_factor, concat_channels=True, name="retina",
                             dtype=policy)
        self.what = _dense(self.glimpse_units, "what", policy, "relu")
        self.where = _dense(self.location_units, "where", policy, "relu")
        self.what_out = _dense(self.units, "what_out", policy)
        self.where_out = _dense(self.units, "where_out", policy)

    def build(self, images_shape, locations_shape):
        self.what.build((None, self.size * self.size * self.num_scales * images_shape[-1]))
        self.where.build((None, 2))
        self.what_out.build((None, self.glimpse_units))
        self.where_out.build((None, self.location_units))

    def call(self, images, locations):
        centres = normalized_to_pixels(ops.cast(locations, "float32"), images.shape[1:3])
        patches = self.retina(images, centres)  # (B, g, g, k * C)
        h_g = self.what(ops.reshape(patches, (-1, self.size * self.size * self.num_scales * images.shape[-1])))
        h_l = self.where(ops.cast(locations, self.compute_dtype))
        return ops.relu(self.what_out(h_g) + self.where_out(h_l))

    def compute_output_shape(self, images_shape, locations_shape):
        return (locations_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, num_scales=self.num_scales, scale_factor=self.scale_factor,
                      glimpse_units=self.glimpse_units, location_units=self.location_units, units=self.units)
        return config
