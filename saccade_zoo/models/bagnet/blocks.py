"""BagNet bottleneck block (Brendel & Bethge 2019), as used by Saccader's BagNet-77-lowD."""
import keras
from keras import ops

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(name, gamma_zero=False, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=False, dtype=None):
    """The BatchNorm used everywhere in the zoo's BagNets: momentum 0.9, epsilon 1e-5 (reference values).

    ``synchronized=True`` computes batch statistics over the global batch under a tf.distribute strategy
    (what makes N replicas train exactly like one device; costs an all-reduce per layer). ``dtype``: the dtype
    policy (None: the global one). Under a mixed policy Keras normalises in float32 and returns the compute
    dtype, so epsilon 1e-5 is safe in float16."""
    return keras.layers.BatchNormalization(
        momentum=momentum,
        epsilon=epsilon,
        synchronized=synchronized,
        gamma_initializer="zeros" if gamma_zero else "ones",
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="saccade_zoo")
class BagNetBlock(keras.layers.Layer):
    """ResNet bottleneck with a restricted receptive field: 1x1 -> kxk (stride) -> 1x1, all "valid".

    Each conv is followed by BatchNorm; ReLU after the first two and after the residual sum. The last
    BatchNorm's gamma starts at zero, so a fresh block is the identity on its shortcut. With k = 3 the
    valid conv shrinks the map by one pixel on each side, so the shortcut is cropped by one pixel on each
    side to match; the stride sits on the kxk conv (and on the projection).

    Deviation from the reference code (documented on purpose): the authors' TF code applies the projection
    branch's BatchNorm to the *main* path a second time instead of to the projected shortcut. We apply it
    to the projected shortcut, as the paper's ResNet design intends; the parameter count is identical
    (the extra BatchNorm is part of the published 20,628,393).

    Args:
        filters: bottleneck width ("planes"); the block outputs `filters * expansion` channels.
        kernel_size: 1 or 3, the middle conv's size.
        strides: stride of the middle conv (and of the projection shortcut).
        expansion: output channels = filters * expansion (4 in ResNet-50).
        projection_shortcut: use a 1x1 conv + BatchNorm on the shortcut (needed when the stride is not 1
            or the channel count changes). The owning backbone decides this, because it knows the input
            channels when it creates the block.
        synchronized_bn: global-batch BatchNorm statistics under a distribution strategy.

    Mixed precision: every sub-layer gets this block's dtype policy, so under ``mixed_float16`` /
    ``mixed_bfloat16`` the convs, the residual sum and the output are in the compute dtype and the variables
    float32 (BatchNorm normalises in float32 internally).
    """

    def __init__(
        self,
        filters,
        kernel_size=1,
        strides=1,
        expansion=4,
        projection_shortcut=False,
        bn_momentum=BN_MOMENTUM,
        bn_epsilon=BN_EPSILON,
        kernel_initializer="he_normal",
        synchronized_bn=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kernel_size not in (1, 3):
            raise ValueError(f"BagNetBlock kernel_size must be 1 or 3, got {kernel_size!r}.")
        if int(strides) < 1:
            raise ValueError(f"BagNetBlock strides must be >= 1, got {strides!r}.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.expansion = int(expansion)
        self.projection_shortcut = bool(projection_shortcut)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = bool(synchronized_bn)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        bn = dict(momentum=bn_momentum, epsilon=bn_epsilon, synchronized=self.synchronized_bn, dtype=self.dtype_policy)

        def conv(filters, size, strides, name):
            return keras.layers.Conv2D(
                filters,
                size,
                strides=strides,
                padding="valid",
                use_bias=False,
                kernel_initializer=self.kernel_initializer,
                name=name,
                dtype=self.dtype_policy,
            )

        out = self.filters * self.expansion
        self.conv1 = conv(self.filters, 1, 1, "conv1")
        self.bn1 = batch_norm("bn1", **bn)
        self.conv2 = conv(self.filters, self.kernel_size, self.strides, "conv2")
        self.bn2 = batch_norm("bn2", **bn)
        self.conv3 = conv(out, 1, 1, "conv3")
        self.bn3 = batch_norm("bn3", gamma_zero=True, **bn)
        if self.projection_shortcut:
            self.shortcut_conv = conv(out, 1, self.strides, "shortcut_conv")
            self.shortcut_bn = batch_norm("shortcut_bn", **bn)

    def build(self, input_shape):
        out = self.filters * self.expansion
        if not self.projection_shortcut and (self.strides != 1 or input_shape[-1] != out):
            raise ValueError(
                f"BagNetBlock '{self.name}': an identity shortcut needs stride 1 and {out} input channels, "
                f"got stride {self.strides} and input shape {tuple(input_shape)}; set projection_shortcut=True."
            )
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(shape)
        self.conv2.build(shape)
        shape = self.conv2.compute_output_shape(shape)
        self.bn2.build(shape)
        self.conv3.build(shape)
        shape = self.conv3.compute_output_shape(shape)
        self.bn3.build(shape)
        if self.projection_shortcut:
            self.shortcut_conv.build(self._crop_shape(input_shape))
            self.shortcut_bn.build(shape)

    def _crop_shape(self, shape):
        c = (self.kernel_size - 1) // 2
        dims = [None if d is None else d - 2 * c for d in shape[1:3]]
        return (shape[0], *dims, shape[3])

    def call(self, inputs, training=None):
        x = ops.relu(self.bn1(self.conv1(inputs), training=training))
        x = ops.relu(self.bn2(self.conv2(x), training=training))
        x = self.bn3(self.conv3(x), training=training)
        shortcut = inputs
        if self.kernel_size == 3:
            shortcut = shortcut[:, 1:-1, 1:-1, :]
        if self.projection_shortcut:
            shortcut = self.shortcut_bn(self.shortcut_conv(shortcut), training=training)
        elif self.strides != 1:  # unreachable: build() rejects it; kept as a guard for subclasses.
            shortcut = shortcut[:, :: self.strides, :: self.strides, :]
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        def size(n):
            if n is None:
                return None
            return (n - self.kernel_size) // self.strides + 1

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.filters * self.expansion)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            expansion=self.expansion,
            projection_shortcut=self.projection_shortcut,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            synchronized_bn=self.synchronized_bn,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
