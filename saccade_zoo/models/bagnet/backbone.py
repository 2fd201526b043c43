"""BagNet with a restricted receptive field (Brendel & Bethge 2019), in Saccader's BagNet-lowD form."""
import keras

from saccade_zoo.models.bagnet.blocks import BN_EPSILON, BN_MOMENTUM, BagNetBlock, batch_norm
from saccade_zoo.contract import OutputContract
from saccade_zoo.models.base import ZooModel, check_activation, reject_unknown_kwargs, shape_hwc
from saccade_zoo.training.losses import full_image_terms
from saccade_zoo.training.staged import Stage, StagedTrainingMixin

# kernel3 (how many 3x3 blocks lead each group) for the standard receptive fields.
KERNEL3 = {9: (1, 1, 0, 0), 17: (1, 1, 1, 0), 33: (1, 1, 1, 1), 77: (2, 2, 2, 2)}


def receptive_field_and_stride(kernel3, strides, blocks, stem_kernel=3):
    """(receptive field, total stride) of a BagNet: each k x k conv adds (k-1) * current stride."""
    field, jump = stem_kernel, 1
    for n_blocks, n3, stride in zip(blocks, kernel3, strides):
        for b in range(n_blocks):
            k = 3 if b < n3 else 1
            field += (k - 1) * jump
            if b == 0:
                jump *= stride
    return field, jump


@keras.saving.register_keras_serializable(package="saccade_zoo")
class BagNet(StagedTrainingMixin, ZooModel):
    """BagNet backbone + classifier head ("lowD" bottleneck as in Saccader).

    Geometry (reference code, checked against the paper's parameter count): ResNet-50 skeleton of
    bottleneck groups ``blocks`` = [3, 4, 6, 3], ``planes`` = [64, 128, 256, 512], expansion 4; the stem
    is ONE 3x3 stride-1 conv (no 7x7, no max-pool); every conv is "valid"; in each group the first
    ``kernel3[g]`` blocks use 3x3 and the rest 1x1; the first block of each group has stride
    ``strides[g]`` = [2, 2, 2, 1] (total stride 8). BagNet-77: kernel3 = [2, 2, 2, 2]; the 9/17/33
    variants use fewer 3x3 blocks (see KERNEL3). With a 224 px input BagNet-77 gives a 19x19 grid and
    cell (i, j) sees exactly pixels [8i, 8i+76] x [8j, 8j+76].

    Head: 1x1 conv to ``lowd_dim`` (512, no bias) + BN + ReLU ("what" features), then a 1x1 conv with
    bias to ``num_classes`` (the logits map); image logits = its spatial mean. ``lowd_dim=None`` gives
    the original BagNet head (logits straight from the 2048-d features). ``synchronized_bn=True`` uses
    global-batch BatchNorm statistics under a tf.distribute strategy (N replicas then train exactly as one).

    Trains through ``fit`` after ``compile(optimizer, stage="representation")`` (paper Eq. 4: cross entropy
    on the class scores aggregated over all locations, plus the weight penalty). ``activation="sigmoid"`` makes
    it a multi-label classifier (multi-hot labels, sigmoid cross entropy of the aggregated scores).

    Outputs (dict): ``logits`` (B, C), ``logits_map`` (B, h, w, C), ``features`` (B, h, w, 2048 for
    expansion 4 and planes[-1] = 512), ``what`` (B, h, w, lowd_dim).

    Mixed precision: ``dtype`` (e.g. "mixed_bfloat16", "mixed_float16"; default: the global policy) goes to
    every layer, so the BagNet computes in the compute dtype with float32 variables; ``logits_map``,
    ``features`` and ``what`` are in the compute dtype. ``logits`` is float32 under every policy: its spatial
    mean is a float32 layer, the model's output head (Keras' advice for the last layer of a mixed-precision
    model). The dtype policy is part of the config, so a saved model reloads with it.
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        num_classes=1001,
        blocks=(3, 4, 6, 3),
        planes=(64, 128, 256, 512),
        kernel3=(2, 2, 2, 2),
        strides=(2, 2, 2, 1),
        stem_filters=64,
        expansion=4,
        lowd_dim=512,
        bn_momentum=BN_MOMENTUM,
        bn_epsilon=BN_EPSILON,
        synchronized_bn=False,
        activation="softmax",
        name="bagnet",
        **kwargs,
    ):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        check_activation(activation)
        image_shape = shape_hwc(image_shape)
        blocks, planes, kernel3, strides = (tuple(int(v) for v in s) for s in (blocks, planes, kernel3, strides))
        if not len(blocks) == len(planes) == len(kernel3) == len(strides):
            raise ValueError("blocks, planes, kernel3 and strides must have the same length (one per group).")
        if any(k > b for k, b in zip(kernel3, blocks)):
            raise ValueError(f"kernel3 {kernel3} asks for more 3x3 blocks than a group has ({blocks}).")
        field, stride = receptive_field_and_stride(kernel3, strides, blocks)
        if min(image_shape[:2]) < field:
            raise ValueError(
                f"image_shape {image_shape} is smaller than one receptive field ({field} px) of this BagNet."
            )

        dtype = kwargs.get("dtype")  # the dtype policy of every layer (None: the global policy)
        bn = dict(momentum=bn_momentum, epsilon=bn_epsilon, synchronized=synchronized_bn, dtype=dtype)
        images = keras.Input(image_shape, name="images")
        x = keras.layers.Conv2D(stem_filters, 3, padding="valid", use_bias=False, kernel_initializer="he_normal",
                                name="stem_conv", dtype=dtype)(images)
        x = batch_norm("stem_bn", **bn)(x)
        x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)
        channels = stem_filters
        for g, (n_blocks, width, n3, group_stride) in enumerate(zip(blocks, planes, kernel3, strides)):
            for b in range(n_blocks):
                block_stride = group_stride if b == 0 else 1
                x = BagNetBlock(
                    width,
                    kernel_size=3 if b < n3 else 1,
                    strides=block_stride,
                    expansion=expansion,
                    projection_shortcut=block_stride != 1 or channels != width * expansion,
                    bn_momentum=bn_momentum,
                    bn_epsilon=bn_epsilon,
                    synchronized_bn=synchronized_bn,
                    name=f"group{g + 1}_block{b + 1}",
                    dtype=dtype,
                )(x)
                channels = width * expansion
        features = x
        if lowd_dim:
            what = keras.layers.Conv2D(lowd_dim, 1, use_bias=False, kernel_initializer="he_normal",
                                       name="lowd_conv", dtype=dtype)(features)
            what = batch_norm("lowd_bn", **bn)(what)
            what = keras.layers.ReLU(name="lowd_relu", dtype=dtype)(what)
        else:
            what = features
        logits_map = keras.layers.Conv2D(num_classes, 1, use_bias=True, name="logits_conv", dtype=dtype)(what)
        # The output head: the image logits are float32 under every policy (the spatial mean upcasts first), as
        # Keras recommends for a model's last layer under mixed precision; the loss sees float32 logits.
        logits = keras.layers.GlobalAveragePooling2D(name="spatial_mean", dtype="float32")(logits_map)
        outputs = {"logits": logits, "logits_map": logits_map, "features": features, "what": what}
        super().__init__(inputs=images, outputs=outputs, name=name, **kwargs)
        if dtype is not None:  # keras.Model's functional __init__ drops `dtype` (keras-hub's Backbone does this too)
            self.dtype_policy = keras.dtype_policies.get(dtype)

        self.blocks, self.planes, self.kernel3, self.strides = blocks, planes, kernel3, strides
        self.stem_filters, self.expansion, self.lowd_dim = int(stem_filters), int(expansion), lowd_dim
        self.bn_momentum, self.bn_epsilon, self.synchronized_bn = bn_momentum, bn_epsilon, bool(synchronized_bn)
        self.activation = activation
        self.receptive_field, self.stride = field, stride
        self.grid_shape = tuple(int(d) for d in logits_map.shape[1:3])

    def _constructor_config(self):
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "blocks": list(self.blocks),
            "planes": list(self.planes),
            "kernel3": list(self.kernel3),
            "strides": list(self.strides),
            "stem_filters": self.stem_filters,
            "expansion": self.expansion,
            "lowd_dim": self.lowd_dim,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "synchronized_bn": self.synchronized_bn,
            "activation": self.activation,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @property
    def min_input_size(self):
        return self.receptive_field

    def output_contract(self):
        """A full-image classifier: ``logits`` plus the maps a glimpse model reads."""
        return OutputContract(num_classes=self.num_classes, num_glimpses=None, activation=self.activation,
                              extra_outputs=(("logits_map", (None, None, self.num_classes), None),
                                             ("features", (None, None, None), None), ("what", (None, None, None), None)))

    # ------------------------------------------------------------------------------------------- training
    stages = (Stage("representation", "Eq. 4: cross entropy of the class scores aggregated over all cells",
                    ("loss", "ce", "l2", "accuracy"), epochs=4, learning_rate=0.1),)

    def _stage_variables(self, stage):
        return self.trainable_variables

    def _stage_terms(self, stage, images, labels, training, options):
        return full_image_terms(self, images, labels, training)
