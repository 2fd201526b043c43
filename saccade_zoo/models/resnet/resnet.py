"""ResNet-18 (He et al. 2016, the "v1" BasicBlock network as in torchvision): the full-image baseline of the
variational saccading paper (Ramapuram et al., Table 1 and the 100x100 cluttered MNIST results)."""
import math

import keras

from saccade_zoo.models.bagnet import blocks as bagnet_blocks  # the zoo's BatchNorm (`blocks` is an argument)
from saccade_zoo.models.base import FullImageClassifier, check_activation, reject_unknown_kwargs, shape_hwc

STEMS = ("imagenet", "small")
# Downsampling of each stem: the "imagenet" stem's stride-2 conv and stride-2 max-pool; the "small" stem none.
STEM_STRIDES = {"imagenet": (2, 2), "small": ()}


def conv_initializer():
    """torchvision's ResNet conv init: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, i.e. an
    untruncated normal with std sqrt(2 / fan_out), fan_out = kernel_h * kernel_w * out_channels."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def dense_initializers(fan_in):
    """torchvision's ``nn.Linear`` default init for the logits layer: kernel and bias both uniform in
    +-1/sqrt(fan_in) (``kaiming_uniform_(a=sqrt(5))``)."""
    limit = 1.0 / math.sqrt(fan_in)
    return (keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform"),
            keras.initializers.RandomUniform(-limit, limit))


def downsampling_strides(stem, num_stages):
    """The stride-2 layers of the network in order: the stem's, then the first block of every stage after the
    first."""
    return (*STEM_STRIDES[stem], *(2 for _ in range(num_stages - 1)))


def min_image_side(stem, num_stages):
    """The smallest image side the network takes: its total stride, 2 ** (number of stride-2 layers): 32 for
    ResNet-18 with the "imagenet" stem, 8 with the "small" one. A convention (keras.applications' ResNets also
    refuse images under 32 px): every layer is padded as in torchvision, so no feature map is ever empty, but a
    smaller image does not fill one cell of the last feature map and the last stages read mostly zero padding (at
    16 px and under with the "imagenet" stem, stage 4's stride-2 block gets a single pixel)."""
    return 2 ** len(downsampling_strides(stem, num_stages))


def feature_map_size(side, stem, num_stages):
    """The side of the last stage's feature map for an image side ``side``: every stride-2 layer (padded as in
    torchvision) maps n to ceil(n / 2). A ValueError if ``side`` is under `min_image_side`."""
    smallest = min_image_side(stem, num_stages)
    if side < smallest:
        raise ValueError(
            f"The image is too small for this ResNet: side {side} px, but with stem {stem!r} and {num_stages} stages "
            f"image sides must be >= {smallest} px, the network's total stride (a smaller image does not fill one "
            "cell of the last feature map: the last stages would read mostly zero padding).")
    for stride in downsampling_strides(stem, num_stages):
        side = math.ceil(side / stride)
    return side


def _conv(filters, kernel, stride, name, dtype):
    """A bias-free conv as torchvision's: padding (kernel - 1) // 2 on every side. Stride 1: "same" (that very
    padding); stride > 1: explicit ZeroPadding2D + "valid" (Keras' "same" would pad only bottom/right on even
    inputs and shift the sampling grid by one pixel against torchvision's; the 1x1 projection needs no padding)."""
    layers = []
    pad = (kernel - 1) // 2
    if stride == 1:
        padding = "same"
    else:
        padding = "valid"
        if pad:
            layers.append(keras.layers.ZeroPadding2D(pad, name=f"{name}_pad", dtype=dtype))
    layers.append(keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                                      kernel_initializer=conv_initializer(), name=name, dtype=dtype))

    def apply(x):
        for layer in layers:
            x = layer(x)
        return x

    return apply


def basic_block(x, filters, stride, prefix, dtype):
    """torchvision's BasicBlock: 3x3 conv (stride) + BN + ReLU + 3x3 conv + BN, plus the shortcut (identity, or a
    1x1 stride-``stride`` conv + BN when the shape changes), then ReLU. Both BatchNorm gammas start at one
    (torchvision's default, ``zero_init_residual=False``)."""
    shortcut = x
    y = _conv(filters, 3, stride, f"{prefix}_conv1", dtype)(x)
    y = bagnet_blocks.batch_norm(f"{prefix}_bn1", dtype=dtype)(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1", dtype=dtype)(y)
    y = _conv(filters, 3, 1, f"{prefix}_conv2", dtype)(y)
    y = bagnet_blocks.batch_norm(f"{prefix}_bn2", dtype=dtype)(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{prefix}_shortcut_conv", dtype)(x)
        shortcut = bagnet_blocks.batch_norm(f"{prefix}_shortcut_bn", dtype=dtype)(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add", dtype=dtype)([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out", dtype=dtype)(y)


def check_resnet_args(image_shape, num_classes, blocks, filters, stem, activation):
    """Validated ``(image_shape, num_classes, blocks, filters)`` of a ResNet-style model (ValueErrors naming the bad
    argument): a known ``stem`` and ``activation``, at least one class, one width (>= 1) per stage of >= 1 blocks."""
    check_activation(activation)
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}.")
    image_shape = shape_hwc(image_shape)
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    blocks = tuple(int(b) for b in blocks)
    filters = tuple(int(f) for f in filters)
    if not blocks or any(b < 1 for b in blocks):
        raise ValueError(f"blocks must list at least one stage's block count (each >= 1), got {blocks}.")
    if len(filters) != len(blocks) or any(f < 1 for f in filters):
        raise ValueError(f"filters needs one width (>= 1) per stage ({len(blocks)}: one per entry of blocks), got "
                         f"{filters}.")
    return image_shape, num_classes, blocks, filters


def trunk(x, blocks, filters, stem, dtype):
    """The convolutional trunk on the Keras tensor ``x``: the stem (``stem_conv``, ``stem_bn``, ``stem_relu`` and,
    for the "imagenet" stem, ``stem_pool_pad`` + ``stem_pool``), then stage ``s`` of ``blocks[s - 1]`` BasicBlocks
    with ``filters[s - 1]`` channels (``stage{s}_block{b}_*``; the first block of every stage after the first has
    stride 2). Returns the last stage's feature map: no pooling, no head. ``blocks``, ``filters`` and ``stem`` are
    taken as validated. `ResNet` builds on it; `saccade_zoo.models.resnet.crops.CropResNet` runs it on a batch of
    crops."""
    if stem == "imagenet":
        x = _conv(filters[0], 7, 2, "stem_conv", dtype)(x)
    else:
        x = _conv(filters[0], 3, 1, "stem_conv", dtype)(x)
    x = bagnet_blocks.batch_norm("stem_bn", dtype=dtype)(x)
    x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)
    if stem == "imagenet":
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad", dtype=dtype)(x)  # zeros after a ReLU: as -inf
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool", dtype=dtype)(x)
    for s, (count, width) in enumerate(zip(blocks, filters), start=1):
        for b in range(1, count + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = basic_block(x, width, stride, f"stage{s}_block{b}", dtype)
    return x


@keras.saving.register_keras_serializable(package="saccade_zoo")
class ResNet(FullImageClassifier):
    """ResNet-18 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016): the "v1" BasicBlock network
    as torchvision builds it (``torchvision.models.resnet18``; keras.applications has no ResNet-18), classifying
    the whole image.

    Why it is in the zoo: it is the naive baseline of the variational saccading paper (Ramapuram et al., Table 1):
    "ResNet-18 - full image" on 100x100 two-digit cluttered MNIST reaches 99.86% (two-digit sum) and 97.4%
    (two-digit identification), the accuracies a hard-attention model reading only a few glimpses is compared
    with (presets ``resnet18_cluttered100_sum`` and ``resnet18_cluttered100_identify``). The paper's other
    ResNet-18 baseline, a ResNet-18 over 144 crops of 224 px of a 2528x2528 image with the crops' logits summed,
    is `saccade_zoo.models.resnet.crops.CropResNet` (built on this network's `trunk`).

    Architecture (torchvision's, same layer shapes and paddings): a stem, then one stage per entry of ``blocks``
    with ``filters[i]`` channels and ``blocks[i]`` BasicBlocks, global average pooling and a dense layer to
    ``num_classes`` logits. Stems:

    * ``stem="imagenet"``: 7x7 stride-2 conv (``filters[0]`` filters, no bias, padding 3) + BN + ReLU +
      3x3 stride-2 max-pool (padding 1): the image is downsampled 4x before stage 1 (224 -> 56; 100 -> 25). The
      pool's padding is zeros (ZeroPadding2D) rather than torchvision's -inf: the same result, as it follows a
      ReLU (every window holds at least one real value >= 0).
    * ``stem="small"``: 3x3 stride-1 conv + BN + ReLU, no pool: the common CIFAR-style stem for small images
      (32 -> 32). At one image size it costs far more: at 100x100, 5.5G multiply-adds per image against the
      "imagenet" stem's 0.43G (13x; 1.81G at 224x224).

    BasicBlock: 3x3 conv (stride s) + BN + ReLU + 3x3 conv + BN; the shortcut is the identity, or a 1x1 stride-s
    conv + BN where the shape changes; add, ReLU. The first block of every stage after the first has stride 2
    (ResNet-18 at 224: 56 -> 28 -> 14 -> 7). Convs have no bias; BatchNorm is the zoo's (momentum 0.9, epsilon
    1e-5: torchvision's 0.1 / 1e-5 in Keras' convention), gammas start at one (torchvision's default
    ``zero_init_residual=False``). Init as torchvision's: conv kernels He-normal with fan_out
    (std sqrt(2 / (k * k * out_channels)), untruncated); the logits layer's kernel and bias uniform in
    +-1/sqrt(filters[-1]) (``nn.Linear``'s default). Layers are named ``stem_conv``, ``stem_bn``, ...,
    ``stage2_block1_conv1``, ``stage2_block1_shortcut_conv``, ..., ``global_pool``, ``logits``.

    Parameters (ResNet-18, 1000 classes, 224x224x3): 11,689,512 trainable (conv kernels, BatchNorm gamma/beta and
    the dense layer: exactly torchvision's count) plus 9,600 non-trainable BatchNorm moving means and variances
    (torchvision's buffers), so ``count_params()`` gives 11,699,112. The count does not depend on the image size.
    The 100x100x1 presets (one input channel, 10 classes): 11,175,370 trainable, 11,184,970 in all (19 classes:
    11,179,987 / 11,189,587).

    Outputs (dict): ``logits`` (B, C) only; the contract has no glimpses (``num_glimpses=None``). ``activation``:
    "softmax" (one class, integer labels) or "sigmoid" (multi-label, multi-hot labels).

    Trains through ``fit`` after ``compile(optimizer, stage="classifier")``: cross entropy of the logits (softmax or
    sigmoid, as the activation says) plus the weight penalty on the kernels (biases and BatchNorm are not
    penalised), as every zoo stage.

    Mixed precision: ``dtype`` (e.g. "mixed_bfloat16", "mixed_float16"; default: the global policy) goes to every
    layer but the logits layer, which is float32 under every policy (the model's output head, Keras' advice for
    the last layer of a mixed-precision model); variables stay float32 and BatchNorm normalises in float32. The
    dtype policy is part of the config.

    Input: ``image_shape`` (height, width, channels); each side must be at least the network's total stride (32
    with the "imagenet" stem, 8 with the "small" one, for 4 stages), else a ValueError at construction. Called
    with images of another shape or rank, the model raises a ValueError naming the expected shape.
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        num_classes=1000,
        blocks=(2, 2, 2, 2),
        filters=(64, 128, 256, 512),
        stem="imagenet",
        activation="softmax",
        name="resnet18",
        **kwargs,
    ):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        image_shape, num_classes, blocks_per_stage, filters = check_resnet_args(
            image_shape, num_classes, blocks, filters, stem, activation)
        for side in image_shape[:2]:
            feature_map_size(side, stem, len(filters))

        dtype = kwargs.get("dtype")  # the dtype policy of every layer (None: the global policy)
        images = keras.Input(image_shape, name="images")
        x = trunk(images, blocks_per_stage, filters, stem, dtype)
        x = keras.layers.GlobalAveragePooling2D(name="global_pool", dtype=dtype)(x)
        kernel_init, bias_init = dense_initializers(filters[-1])
        # The output head: float32 under every policy (Keras' advice for the last layer under mixed precision).
        logits = keras.layers.Dense(num_classes, kernel_initializer=kernel_init, bias_initializer=bias_init,
                                    name="logits", dtype="float32")(x)
        super().__init__(inputs=images, outputs={"logits": logits}, name=name, **kwargs)
        if dtype is not None:  # keras.Model's functional __init__ drops `dtype` (keras-hub's Backbone does this too)
            self.dtype_policy = keras.dtype_policies.get(dtype)

        self.blocks, self.filters, self.stem, self.activation = blocks_per_stage, filters, stem, activation

    @property
    def feature_map_shape(self):
        """(height, width, channels) of the last stage's feature map (7x7x512 for ResNet-18 at 224)."""
        sides = [feature_map_size(side, self.stem, len(self.filters)) for side in self.image_shape[:2]]
        return (*sides, self.filters[-1])

    def _constructor_config(self):
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "blocks": list(self.blocks),
            "filters": list(self.filters),
            "stem": self.stem,
            "activation": self.activation,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
