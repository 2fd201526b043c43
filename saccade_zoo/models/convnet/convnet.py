"""A small full-image CNN classifier: the occlusion judge of the Saccader paper (section 4.2) and the ConvNet
baseline of the RAM paper (Mnih et al. 2014)."""
import math

import keras

from saccade_zoo.models.bagnet import blocks
from saccade_zoo.models.base import FullImageClassifier, check_activation, reject_unknown_kwargs, shape_hwc

PADDINGS = ("same", "valid")


def _per_layer(values, n, what):
    """One int per conv layer: an int is used for every layer; a sequence must have one value per layer."""
    if isinstance(values, int):
        values = (values,) * n
    values = tuple(int(v) for v in values)
    if len(values) != n:
        raise ValueError(f"{what} needs one value per conv layer ({n}: one per entry of filters), got {values}.")
    if any(v < 1 for v in values):
        raise ValueError(f"{what} must be >= 1, got {values}.")
    return values


def feature_map_size(size, kernel_sizes, strides, padding="same", pool=True):
    """The side of the last conv stage's feature map for an input side ``size`` (each conv, then a 2x2 stride-2
    "valid" max-pool when ``pool``); a ValueError naming the first layer whose output would be empty."""
    for i, (k, s) in enumerate(zip(kernel_sizes, strides)):
        size = math.ceil(size / s) if padding == "same" else (size - k) // s + 1
        if size >= 1 and pool:
            size //= 2
        if size < 1:
            raise ValueError(f"conv layer {i + 1} (kernel {k}, stride {s}{', max-pool 2' if pool else ''}) leaves "
                             "no pixels: the image is too small for these kernel_sizes / strides / pool settings.")
    return size


@keras.saving.register_keras_serializable(package="saccade_zoo")
class ConvNet(FullImageClassifier):
    """A plain CNN that classifies the whole image: conv layers, then a dense head to the class logits.

    Uses in the zoo: (1) the occlusion "judge" of the Saccader paper's section 4.2, a separately trained full-image
    classifier that classifies images whose glimpse boxes were blacked out (the paper uses a ResNet-v2-50; the
    cluttered presets use a small CNN, ``convnet_cluttered100``); (2) the RAM paper's "Convolutional, 2 layers"
    baseline on cluttered MNIST (``convnet2_cluttered60`` / ``convnet2_cluttered100``, see their presets).

    Architecture: for each entry of ``filters``, a ``kernel_sizes[i]`` x ``kernel_sizes[i]`` conv with stride
    ``strides[i]`` and ``padding``, then BatchNorm (``batch_norm=True``: the conv has no bias; the zoo's BatchNorm,
    momentum 0.9, epsilon 1e-5) and ReLU, then (``pool=True``) a 2x2 stride-2 max-pool. The last feature map goes
    to the head through global average pooling (``flatten=False``) or flattened (``flatten=True``: every position
    has its own weights, as in the RAM baseline); then one ReLU dense layer per entry of ``dense_units`` (empty:
    straight to the logits) and a dense layer to ``num_classes`` logits. ``dropout`` > 0 puts a Dropout layer
    before every dense layer. Kernels are He-normal initialised (the logits layer: Glorot-uniform).

    Outputs (dict): ``logits`` (B, C) only; the contract has no glimpses (``num_glimpses=None``). ``activation``:
    "softmax" (one class, integer labels) or "sigmoid" (multi-label, multi-hot labels).

    Trains through ``fit`` after ``compile(optimizer, stage="classifier")``: cross entropy of the logits (softmax or
    sigmoid, as the activation says) plus the weight penalty on the kernels (biases and BatchNorm are not
    penalised), as every zoo stage.

    Mixed precision: ``dtype`` (e.g. "mixed_bfloat16", "mixed_float16"; default: the global policy) goes to every
    layer but the logits layer, which is float32 under every policy (the model's output head, Keras' advice for
    the last layer of a mixed-precision model). The dtype policy is part of the config.
    """

    def __init__(
        self,
        image_shape=(100, 100, 1),
        num_classes=10,
        filters=(16, 32, 64, 128),
        kernel_sizes=3,
        strides=1,
        padding="same",
        pool=True,
        batch_norm=True,
        flatten=False,
        dense_units=(128,),
        dropout=0.0,
        activation="softmax",
        name="convnet",
        **kwargs,
    ):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        check_activation(activation)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")
        image_shape = shape_hwc(image_shape)
        filters = tuple(int(f) for f in filters)
        if not filters or any(f < 1 for f in filters):
            raise ValueError(f"filters must list at least one conv layer's filter count (each >= 1), got {filters}.")
        kernel_sizes = _per_layer(kernel_sizes, len(filters), "kernel_sizes")
        strides = _per_layer(strides, len(filters), "strides")
        dense_units = tuple(int(u) for u in dense_units)
        if any(u < 1 for u in dense_units):
            raise ValueError(f"dense_units must be >= 1, got {dense_units}.")
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        for side in image_shape[:2]:
            feature_map_size(side, kernel_sizes, strides, padding, pool)

        dtype = kwargs.get("dtype")  # the dtype policy of every layer (None: the global policy)
        images = keras.Input(image_shape, name="images")
        x = images
        for i, (width, size, stride) in enumerate(zip(filters, kernel_sizes, strides), start=1):
            x = keras.layers.Conv2D(width, size, strides=stride, padding=padding, use_bias=not batch_norm,
                                    kernel_initializer="he_normal", name=f"conv{i}", dtype=dtype)(x)
            if batch_norm:
                x = blocks.batch_norm(f"bn{i}", dtype=dtype)(x)
            x = keras.layers.ReLU(name=f"relu{i}", dtype=dtype)(x)
            if pool:
                x = keras.layers.MaxPooling2D(2, name=f"pool{i}", dtype=dtype)(x)
        if flatten:
            x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
        else:
            x = keras.layers.GlobalAveragePooling2D(name="global_pool", dtype=dtype)(x)
        for i, units in enumerate(dense_units, start=1):
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"dropout{i}", dtype=dtype)(x)
            x = keras.layers.Dense(units, activation="relu", kernel_initializer="he_normal", name=f"dense{i}",
                                   dtype=dtype)(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout_logits", dtype=dtype)(x)
        # The output head: float32 under every policy (Keras' advice for the last layer under mixed precision).
        logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
        super().__init__(inputs=images, outputs={"logits": logits}, name=name, **kwargs)
        if dtype is not None:  # keras.Model's functional __init__ drops `dtype` (keras-hub's Backbone does this too)
            self.dtype_policy = keras.dtype_policies.get(dtype)

        self.filters, self.kernel_sizes, self.strides, self.padding = filters, kernel_sizes, strides, padding
        self.pool, self.batch_norm, self.flatten = bool(pool), bool(batch_norm), bool(flatten)
        self.dense_units, self.dropout, self.activation = dense_units, dropout, activation

    def _constructor_config(self):
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "filters": list(self.filters),
            "kernel_sizes": list(self.kernel_sizes),
            "strides": list(self.strides),
            "padding": self.padding,
            "pool": self.pool,
            "batch_norm": self.batch_norm,
            "flatten": self.flatten,
            "dense_units": list(self.dense_units),
            "dropout": self.dropout,
            "activation": self.activation,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
