"""Saccader's attention ("where") network."""
import keras
from keras import ops

from saccade_zoo.models.bagnet.blocks import BN_EPSILON, BN_MOMENTUM, batch_norm


@keras.saving.register_keras_serializable(package="saccade_zoo")
class AttentionNetwork(keras.layers.Layer):
    """The "where" pathway: 1x1 -> 3x3 dilated -> 1x1 -> 3x3 dilated convs, each BatchNorm + ReLU.

    Paper section 3.1 / Fig. Supp.5 and the reference code: on the 2048-channel BagNet features,
    1x1 conv 2048->1024, 3x3 conv (dilation 2) 1024->1024, 1x1 conv 1024->512, 3x3 conv (dilation 2)
    512->512; padding "same", no bias. The 3x3 dilated convs widen the receptive field of the location
    features (the classification path keeps its 77 px receptive field).

    Args:
        filters: the two widths (first pair, second pair); (1024, 512) in the paper.
        dilation_rate: dilation of the 3x3 convs (2 in the paper).
        synchronized_bn: global-batch BatchNorm statistics under a distribution strategy.

    Mixed precision: the convs and BatchNorms get this layer's dtype policy (compute dtype activations,
    float32 variables).
    """

    def __init__(
        self,
        filters=(1024, 512),
        dilation_rate=2,
        bn_momentum=BN_MOMENTUM,
        bn_epsilon=BN_EPSILON,
        kernel_initializer="he_normal",
        synchronized_bn=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        if len(self.filters) != 2:
            raise ValueError(f"AttentionNetwork filters must be two widths, got {filters!r}.")
        self.dilation_rate = int(dilation_rate)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.synchronized_bn = bool(synchronized_bn)
        self.convs = []
        self.norms = []
        specs = [(self.filters[0], 1), (self.filters[0], 3), (self.filters[1], 1), (self.filters[1], 3)]
        for i, (width, size) in enumerate(specs):
            self.convs.append(
                keras.layers.Conv2D(
                    width,
                    size,
                    padding="same",
                    dilation_rate=self.dilation_rate if size == 3 else 1,
                    use_bias=False,
                    kernel_initializer=self.kernel_initializer,
                    name=f"conv{i + 1}",
                    dtype=self.dtype_policy,
                )
            )
            self.norms.append(
                batch_norm(f"bn{i + 1}", momentum=bn_momentum, epsilon=bn_epsilon, synchronized=self.synchronized_bn,
                           dtype=self.dtype_policy)
            )

    def build(self, input_shape):
        shape = input_shape
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        for conv, norm in zip(self.convs, self.norms):
            x = ops.relu(norm(conv(x), training=training))
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=list(self.filters),
            dilation_rate=self.dilation_rate,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            synchronized_bn=self.synchronized_bn,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
