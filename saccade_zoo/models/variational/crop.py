"""The crop classifier of variational saccading (Ramapuram et al., section 4 and appendix 7.6)."""
import keras
from keras import ops

from saccade_zoo.models.variational.vrnn import BN_MOMENTUM, GN_EPSILON, NORM_EPSILON


@keras.saving.register_keras_serializable(package="saccade_zoo")
class CropClassifier(keras.layers.Layer):
    """Classifies the T glimpses of an image: the paper's "standard fully-convolutional network, followed by a
    spatial pooling operation on the results of the convolution over the crops o_i", combined with the VRNN's
    state, averaged over the T steps, and a dense head.

    Per glimpse o_t (L x L x C) and VRNN state h_{t-1} (the state the glimpse's z_t was drawn from):
    - features f_t: per entry of ``filters`` a 3x3 stride-2 "same" Conv2D (no bias) + GroupNormalization + ReLU
      (the paper: group-norm on convolutions; epsilon 0.1, see `vrnn.GN_EPSILON`: glimpses of blank background),
      then global average pooling;
    - e_t = ReLU(BN(Dense(units)([f_t, h_{t-1}]))) (batch-norm on dense layers);
    - step_logits_t = head(e_t), one Dense layer to the classes (float32 under every dtype policy).
    The model's logits are the mean of the step logits over the T steps; since the head is affine this is exactly
    ``head(mean_t e_t)``: "averaged over the T steps, then a dense head". The mean over the first k steps is the
    prediction after k glimpses (the VRNN is causal), which is what accuracy-vs-glimpses reads.

    Args:
        num_classes: outputs of the head.
        filters: conv widths (multiples of ``groups``).
        units: width of e_t.
        groups: GroupNormalization groups.
    Call args: glimpses (B, T, L, L, C), h_prev (B, T, U), training.
    Returns: step_logits (B, T, num_classes) float32.
    """

    def __init__(self, num_classes, filters=(32, 64, 128, 256), units=512, groups=8, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.units, self.groups = int(num_classes), int(units), int(groups)
        self.filters = tuple(int(f) for f in filters)
        if not self.filters or any(f % self.groups for f in self.filters):
            raise ValueError(f"CropClassifier filters must be non-empty multiples of groups={self.groups}, got "
                             f"{self.filters}.")
        policy = self.dtype_policy
        self.convs = [keras.layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False,
                                          kernel_initializer="he_normal", name=f"conv{i + 1}", dtype=policy)
                      for i, f in enumerate(self.filters)]
        self.norms = [keras.layers.GroupNormalization(groups=self.groups, epsilon=GN_EPSILON, name=f"gn{i + 1}",
                                                      dtype=policy) for i in range(len(self.filters))]
        self.dense = keras.layers.Dense(self.units, use_bias=False, kernel_initializer="he_normal", name="dense",
                                        dtype=policy)
        self.bn = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=NORM_EPSILON, name="bn", dtype=policy)
        self.head = keras.layers.Dense(self.num_classes, name="head", dtype="float32")

    def build(self, glimpses_shape, h_prev_shape):
        shape = (None, *glimpses_shape[2:])
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        self.dense.build((None, self.filters[-1] + h_prev_shape[-1]))
        self.bn.build((None, self.units))
        self.head.build((None, self.units))

    def call(self, glimpses, h_prev, training=None):
        steps = glimpses.shape[1]
        x = ops.reshape(ops.cast(glimpses, self.compute_dtype), (-1, *glimpses.shape[2:]))  # (B * T, L, L, C)
        for conv, norm in zip(self.convs, self.norms):
            x = ops.relu(norm(conv(x)))
        x = ops.mean(x, axis=(1, 2))  # spatial pooling
        h = ops.reshape(ops.cast(h_prev, self.compute_dtype), (-1, h_prev.shape[-1]))
        x = ops.relu(self.bn(self.dense(ops.concatenate([x, h], axis=-1)), training=training))
        logits = self.head(ops.cast(x, "float32"))
        return ops.reshape(logits, (-1, steps, self.num_classes))

    def compute_output_shape(self, glimpses_shape, h_prev_shape):
        return (glimpses_shape[0], glimpses_shape[1], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, filters=list(self.filters), units=self.units, groups=self.groups)
        return config
