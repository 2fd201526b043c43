"""Layers of DRAM (Ba, Mnih, Kavukcuoglu 2015) and of the Saccader authors' DRAM: the glimpse network (views from
the zoo's one retina, `saccade_zoo.layers.glimpse.Retina`) and the context network."""
import keras
from keras import ops

from saccade_zoo.layers.glimpse import Retina, normalized_to_pixels
from saccade_zoo.layers.resize import AreaResize

WHERE = ("multiply", "channels")
ENCODERS = ("convnet", "resnet50v2")


def _conv_stack(filters, kernels, name, dtype):
    return [keras.layers.Conv2D(f, k, padding="valid", activation="relu", name=f"{name}_conv{i + 1}", dtype=dtype)
            for i, (f, k) in enumerate(zip(filters, kernels))]


def _check_convs(filters, kernels, size, what):
    filters, kernels = tuple(int(f) for f in filters), tuple(int(k) for k in kernels)
    if len(filters) != len(kernels) or not filters:
        raise ValueError(f"{what}: filters {filters} and kernel_sizes {kernels} need one entry per conv layer.")
    side = size
    for k in kernels:
        side -= k - 1
    if side < 1:
        raise ValueError(f"{what}: {size} px inputs leave no pixels after 'valid' convs of kernels {kernels}.")
    return filters, kernels, side


@keras.saving.register_keras_serializable(package="saccade_zoo")
class DRAMGlimpseNetwork(keras.layers.Layer):
    """DRAM's glimpse network: views of the image around a location l in [-1, 1]^2 -> a feature vector g.

    Views: one patch per entry of ``sides`` (image pixels, finest first), each resampled to ``size`` x ``size`` by
    the shared retina, stacked on channels. Two ways to tell the network where it looks (``where``):

    - ``"multiply"`` (Ba et al. 2015, eq. 1): g = G_image(x) * G_loc(l), element-wise: a conv net on the views
      (``encoder="convnet"``: 'valid' ReLU convs of ``filters`` / ``kernel_sizes`` (Ba et al.: 64, 64, 128 of 5, 3,
      3), flattened, then ReLU(Linear) to ``units``) times ReLU(Linear(l)) of ``units``.
    - ``"channels"`` (the Saccader authors' DRAM): every view gets two position channels, the normalised (y, x)
      image coordinates of each of its samples, so the encoder sees where as well as what; g is the encoder's
      output (``encoder="resnet50v2"``: `keras.applications.ResNet50V2` without its top, global mean, 2048-d; on
      3 RGB views, 15 channels). Outside the context step only the finest view is shown: the coarser views (all
      their channels) are replaced by their per-channel mean.

    Call args: images (B, H, W, C), locations (B, 2) normalised (y, x), context (bool, static: the context step
    sees every view in full). Returns (B, output_dim).
    """

    def __init__(self, size=12, sides=(12,), where="multiply", encoder="convnet", filters=(64, 64, 128),
                 kernel_sizes=(5, 3, 3), units=256, **kwargs):
        super().__init__(**kwargs)
        self.size, self.sides = int(size), tuple(float(s) for s in sides)
        if not self.sides:
            raise ValueError("sides needs at least one view side (image pixels).")
        if where not in WHERE:
            raise ValueError(f"where must be one of {WHERE}, got {where!r}.")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}.")
        self.where, self.encoder_name, self.units = where, encoder, int(units)
        policy = self.dtype_policy
        self.retina = Retina(self.size, len(self.sides), sides=list(self.sides), concat_channels=True, name="retina",
                             dtype=policy)
        if encoder == "convnet":
            self.filters, self.kernel_sizes, _ = _check_convs(filters, kernel_sizes, self.size, "DRAM glimpse network")
            self.convs = _conv_stack(self.filters, self.kernel_sizes, "glimpse", policy)
            self.what = keras.layers.Dense(self.units, activation="relu", name="what", dtype=policy)
        else:  # kept in the config only: the ResNet has its own layers
            self.filters, self.kernel_sizes = tuple(int(f) for f in filters), tuple(int(k) for k in kernel_sizes)
            self.convs, self.what = [], None
        self.where_dense = (keras.layers.Dense(self.units, activation="relu", name="where", dtype=policy)
                            if where == "multiply" else None)
        self.resnet = None

    @property
    def output_dim(self):
        return 2048 if self.encoder_name == "resnet50v2" else self.units

    def build(self, images_shape, locations_shape=None):
        channels = int(images_shape[-1]) + (2 if self.where == "channels" else 0)
        shape = (None, self.size, self.size, channels * len(self.sides))
        if self.encoder_name == "resnet50v2":
            self.resnet = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=shape[1:],
                                                        pooling="avg", name="resnet50v2")
            return
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.what.build((None, shape[1] * shape[2] * shape[3]))
        if self.where_dense is not None:
            self.where_dense.build((None, 2))

    def _position_channels(self, locations, image_hw):
        """(B, g, g, 2 * k): for view k, the normalised (y, x) coordinates of its g x g samples."""
        grid = (ops.arange(self.size, dtype="float32") + 0.5) / float(self.size) - 0.5  # (g,) in [-0.5, 0.5)
        maps = []
        for side in self.sides:
            # a view of `side` pixels spans side / H * 2 normalised units in y (side / W * 2 in x)
            span_y, span_x = 2.0 * side / float(image_hw[0]), 2.0 * side / float(image_hw[1])
            ys = locations[:, 0:1] + grid[None, :] * span_y  # (B, g)
            xs = locations[:, 1:2] + grid[None, :] * span_x
            ymap = ops.repeat(ops.expand_dims(ys, 2), self.size, axis=2)  # (B, g, g): row i has y_i
            xmap = ops.repeat(ops.expand_dims(xs, 1), self.size, axis=1)  # (B, g, g): column j has x_j
            maps.append(ops.stack([ymap, xmap], axis=-1))
        return maps

    def call(self, images, locations, context=False):
        locations = ops.cast(locations, "float32")
        image_hw = images.shape[1:3]
        views = self.retina(images, normalized_to_pixels(locations, image_hw))  # (B, g, g, k * C)
        channels = images.shape[-1]
        if self.where == "channels":
            positions = self._position_channels(locations, image_hw)
            parts = []
            for k in range(len(self.sides)):
                view = ops.concatenate([views[..., k * channels:(k + 1) * channels],
                                        ops.cast(positions[k], views.dtype)], axis=-1)  # (B, g, g, C + 2)
                if k > 0 and not context:  # outside the context step only the finest view is seen
                    view = ops.ones_like(view) * ops.mean(view, axis=(1, 2), keepdims=True)
                parts.append(view)
            views = ops.concatenate(parts, axis=-1)
        if self.encoder_name == "resnet50v2":
            return self.resnet(views)
        x = views
        for conv in self.convs:
            x = conv(x)
        what = self.what(ops.reshape(x, (-1, x.shape[1] * x.shape[2] * x.shape[3])))
        if self.where_dense is None:
            return what
        return what * self.where_dense(ops.cast(locations, self.compute_dtype))

    def compute_output_spec(self, images, locations, context=False):
        return keras.KerasTensor((locations.shape[0], self.output_dim), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, sides=list(self.sides), where=self.where, encoder=self.encoder_name,
                      filters=list(self.filters), kernel_sizes=list(self.kernel_sizes), units=self.units)
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class ContextNetwork(keras.layers.Layer):
    """DRAM's context network (Ba et al. 2015, section 3): a conv net on a down-sampled copy of the whole image
    whose output is the initial state of the upper (location) LSTM, so the first glimpse is placed from a coarse
    look at everything. Area-resize to ``size`` (`AreaResize`), 'valid' ReLU convs of ``filters`` /
    ``kernel_sizes``, flatten, Linear to ``units`` with tanh (the range of an LSTM's output).

    Call args: images (B, H, W, C). Returns (B, units)."""

    def __init__(self, size=24, filters=(16, 32, 32), kernel_sizes=(5, 3, 3), units=256, **kwargs):
        super().__init__(**kwargs)
        self.size, self.units = int(size), int(units)
        self.filters, self.kernel_sizes, _ = _check_convs(filters, kernel_sizes, self.size, "DRAM context network")
        policy = self.dtype_policy
        self.resize = AreaResize(self.size, name="downsample", dtype=policy)
        self.convs = _conv_stack(self.filters, self.kernel_sizes, "context", policy)
        self.dense = keras.layers.Dense(self.units, activation="tanh", name="context_state", dtype=policy)

    def build(self, images_shape):
        self.resize.build(images_shape)
        shape = (None, self.size, self.size, images_shape[-1])
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.dense.build((None, shape[1] * shape[2] * shape[3]))

    def call(self, images):
        x = self.resize(images)
        for conv in self.convs:
            x = conv(x)
        return self.dense(ops.reshape(x, (-1, x.shape[1] * x.shape[2] * x.shape[3])))

    def compute_output_shape(self, images_shape):
        return (images_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, filters=list(self.filters), kernel_sizes=list(self.kernel_sizes),
                      units=self.units)
        return config
