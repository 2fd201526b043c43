"""ResNet-18 over a grid of crops: the variational saccading paper's large-image baseline (Ramapuram et al., Section
4.1 and Table 1, "resnet18 - 144 crops": a 2528x2528 image cut into 144 crops of 224x224, one ResNet-18 on every
crop, the crops' logits summed and a dense layer on the sum)."""
import keras
import numpy as np

from saccade_zoo.models.base import FullImageClassifier, reject_unknown_kwargs
from saccade_zoo.models.resnet.resnet import check_resnet_args, dense_initializers, feature_map_size, trunk


def crop_offsets(side, crop_size, grid):
    """The ``grid`` start offsets of the crops along one image axis of ``side`` px: evenly spaced integers from 0
    to ``side - crop_size``, ``round(i * (side - crop_size) / (grid - 1))`` for i = 0 .. grid - 1 (rounded half up,
    computed in integers), so the first crop starts at 0 and the last ends at ``side``; ``(0,)`` for ``grid == 1``.
    The paper's geometry (side 2528, crops of 224, a 12 x 12 grid: 12 * 224 = 2688 > 2528, so neighbours overlap by
    14-15 px): 0, 209, 419, 628, 838, 1047, 1257, 1466, 1676, 1885, 2095, 2304.

    ValueError when the crops do not fit: ``grid < 1``, a crop larger than the side, crops that leave gaps
    (``grid * crop_size < side``: the spacing would exceed the crop) or duplicate crops (``grid - 1 > side -
    crop_size``: a spacing under one pixel)."""
    side, crop_size, grid = int(side), int(crop_size), int(grid)
    if grid < 1:
        raise ValueError(f"grid must be >= 1 (crops per image axis), got {grid}.")
    if crop_size < 1:
        raise ValueError(f"crop_size must be >= 1 px, got {crop_size}.")
    if crop_size > side:
        raise ValueError(f"crop_size {crop_size} px does not fit in the image: the image side is {side} px.")
    if grid * crop_size < side:
        raise ValueError(f"{grid} crops of {crop_size} px leave gaps on an image side of {side} px: grid * crop_size "
                         f"= {grid * crop_size} must be >= {side} (every pixel must be in a crop).")
    if grid > 1 and grid - 1 > side - crop_size:
        raise ValueError(f"{grid} crops of {crop_size} px on an image side of {side} px would repeat crops: grid - 1 "
                         f"must be <= side - crop_size = {side - crop_size} (offsets at least one pixel apart).")
    if grid == 1:
        return (0,)  # the gap check leaves crop_size == side
    span, steps = side - crop_size, grid - 1
    return tuple((2 * i * span + steps) // (2 * steps) for i in range(grid))  # floor(i * span / steps + 1/2)


@keras.saving.register_keras_serializable(package="saccade_zoo")
class CropGrid(keras.layers.Layer):
    """(B, H, W, C) images -> (B * grid * grid, crop_size, crop_size, C): the fixed ``grid`` x ``grid`` crops of
    every image, at `crop_offsets` on each axis, row-major (crop ``k = i * grid + j`` of image ``b`` is row
    ``b * grid * grid + k``: offsets ``rows[i]`` down and ``cols[j]`` across), i.e. exactly
    ``images[b, rows[i]:rows[i] + crop_size, cols[j]:cols[j] + crop_size]``.

    The crops are static: two gathers with constant indices (the crops' rows, then their columns), reshapes and a
    transpose, all of rank 4 (TFLite built-ins: the zoo's export converts it). That reads as the slices above, and
    its gradient, should anything upstream need one, is a scatter-add into one image-sized tensor, where 144
    separate slices would each back-propagate a zero-padded image-sized gradient."""

    def __init__(self, crop_size, grid, **kwargs):
        super().__init__(**kwargs)
        self.crop_size, self.grid = int(crop_size), int(grid)

    def _offsets(self, input_shape):
        return tuple(crop_offsets(side, self.crop_size, self.grid) for side in input_shape[1:3])

    def build(self, input_shape):
        self._offsets(input_shape)  # a ValueError if the crops do not fit

    def call(self, images):
        n, c = self.grid, self.crop_size
        rows, cols = (np.concatenate([np.arange(o, o + c) for o in offsets]).astype("int32")
                      for offsets in self._offsets(images.shape))
        channels = images.shape[-1]
        # b, i, j: image, crop row, crop column.
        x = keras.ops.take(images, rows, axis=1)  # (B, n * c, W, C)
        x = keras.ops.reshape(x, (-1, c, images.shape[2], channels))  # (B * n, c, W, C): row (b, i)
        x = keras.ops.take(x, cols, axis=2)  # (B * n, c, n * c, C)
        x = keras.ops.reshape(x, (-1, c, n, c * channels))  # (b i, y, j, x C)
        x = keras.ops.transpose(x, (0, 2, 1, 3))  # (b i, j, y, x C)
        return keras.ops.reshape(x, (-1, c, c, channels))  # (b i j, y, x, C)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch * self.grid ** 2, self.crop_size, self.crop_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "crop_size": self.crop_size, "grid": self.grid}


@keras.saving.register_keras_serializable(package="saccade_zoo")
class CropSum(keras.layers.Layer):
    """(B * num_crops, D) per-crop vectors -> (B, D): each image's sum over its ``num_crops`` consecutive rows (the
    layout `CropGrid` makes)."""

    def __init__(self, num_crops, **kwargs):
        super().__init__(**kwargs)
        self.num_crops = int(num_crops)

    def call(self, x):
        return keras.ops.sum(keras.ops.reshape(x, (-1, self.num_crops, x.shape[-1])), axis=1)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch // self.num_crops, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_crops": self.num_crops}


@keras.saving.register_keras_serializable(package="saccade_zoo")
class CropResNet(FullImageClassifier):
    """ResNet-18 over a fixed grid of crops: the large-image baseline of the variational saccading paper
    (Ramapuram et al., Section 4.1, Table 1 "resnet18 - 144 crops": 11.4M parameters; 97.3% on 2528x2528 two-digit
    cluttered MNIST identification, 63.6% on MIT-Adobe 5k at 2528x2528, against variational saccading's 95.23% and
    62.7% with 7.4M parameters). Presets ``resnet18_crops144_cluttered2528_identify`` and
    ``resnet18_crops144_photo``.

    The paper: "we divide an original 2528x2528 image into 144x224x224 individual crops and feed each crop into the
    model. We then sum the logit outputs of the model and run the pooled result through a dense layer":
    ``y = f(sum_i g(x_i))``. Here:

    1. **Crops** (`CropGrid`, layer ``crop_grid``): a ``grid`` x ``grid`` grid of ``crop_size`` crops per image. On
       an axis of side S the crops start at ``round(i * (S - crop_size) / (grid - 1))``, i = 0 .. grid - 1 (rounded
       half up; `crop_offsets`): evenly spaced, the first at 0, the last ending at S. The paper's 12 x 12 crops of
       224 on 2528 px (12 * 224 = 2688 > 2528) overlap their neighbours by 14-15 px: offsets 0, 209, 419, ...,
       2304. Crops must cover the image (``grid * crop_size >= side``) and be distinct, else a ValueError at
       construction. The crops are fixed, extracted in the graph (static indices) and stacked into one batch of
       B * grid * grid crops, row-major per image.
    2. **g, per crop**: the ResNet trunk (`saccade_zoo.models.resnet.resnet.trunk`: `ResNet`'s stem and BasicBlock
       stages, the same layer names, one set of weights shared by every crop), run once on the batch of crops,
       global average pooling (``global_pool``: ``filters[-1]`` = 512 features) and the ResNet's own fc
       (``crop_logits``: ``crop_units`` = 512 outputs by default): ``g`` is torchvision's ``resnet18(num_classes=
       crop_units)``, and its output is what the paper calls a crop's logits.
    3. **Sum over crops** (`CropSum`, ``crop_sum``): each image's ``crop_units``-vector, summed over its crops (a
       sum, as the paper: not a mean; its scale grows with the number of crops).
    4. **f, the head** (``logits``): one dense layer ``crop_units -> num_classes``: the class logits.

    Why ``crop_units = 512`` and not ``num_classes``: it is the reading that gives the paper's 11.4M. ResNet-18's
    trunk has 11,170,240 trainable weights with one input channel (11,176,512 with three), the 512 -> 512 crop fc
    262,656 and the 512 -> 10 head 5,130: 11,438,026, "11.4M". Per-crop logits of ``num_classes`` (10) and a
    10 -> 10 head would give 11,175,480 ("11.2M"); per-crop features summed straight into the head
    (``crop_units=None``) 11,175,370, exactly the full-image `ResNet`'s count. The paper gives no more detail (the
    authors' public code has no 144-crop model; their other baselines turn grey images into RGB, which would add
    6,272 stem weights: 11,444,298). Note that the crop fc, the sum and the head are all linear, so with any
    ``crop_units >= num_classes`` the model computes the same family of functions as ``crop_units=None`` (summed
    features, one dense layer): the 512 -> 512 fc adds parameters, not capacity; it is kept to match the model the
    paper counts.

    Parameters: the preset ``resnet18_crops144_cluttered2528_identify`` (2528x2528x1, 10 classes) has 11,438,026
    trainable parameters plus 9,600 non-trainable BatchNorm moving statistics: ``count_params()`` 11,447,626.
    ``resnet18_crops144_photo`` (2528x2528x3, 6 classes): 11,442,246 trainable, 11,451,846 in all. The count does
    not depend on the image size or the grid.

    Memory and cost: the trunk runs on every crop, so activations (and compute) are ``grid ** 2`` (144) times one
    ResNet-18 pass at ``crop_size``, per image: 144 x 1.8G = 262G multiply-adds per 2528x2528 image (the overlaps
    make 144 * 224^2 = 7.2M pixels of its 6.4M), and training keeps 144 crops' activations for the backward pass.
    Measured on 2 CPU cores (float32, oneDNN off): inference 3-5 s per 2528x2528 image; one training step on 2 images
    85 s (44 s once traced) with a peak of 8.4 GB of host memory, about 4 GB per image. The paper needed 79 GB at
    batch 160 over 8 GPUs ("naive") or 6.5 GB with gradient checkpointing; nothing here checkpoints: size the batch
    for it (a few images per GPU), or use mixed precision. At initialisation the sum over 144 crops makes large
    logits (a sigmoid cross entropy of about 29, summed over 10 classes, on the first training step of the
    identification preset, 10 on the second): the scale of the sum, as in the paper, not a fault.

    Init as `ResNet` (torchvision's): He-normal fan_out conv kernels, BatchNorm gammas at one, and both dense layers
    as ``nn.Linear`` (kernel and bias uniform in +-1/sqrt(fan_in)).

    Outputs (dict): ``logits`` (B, num_classes) only, as `ResNet` (no glimpses). ``activation``: "softmax" (one
    class, integer labels) or "sigmoid" (multi-label, multi-hot labels). Trains through ``fit`` after
    ``compile(optimizer, stage="classifier")``, as `ResNet`: cross entropy of the logits plus the penalty on the
    kernels.

    Mixed precision: ``dtype`` goes to the crop extraction and the trunk; the crop fc, the sum over crops and the
    head run in float32 under every policy (a 144-term sum in bfloat16, 8 significant bits, would be coarse).

    Input: ``image_shape`` (height, width, channels); height and width may differ (offsets per axis, the same
    ``grid`` on both). ``crop_size`` must be at least the trunk's total stride (32 with the "imagenet" stem).
    Called with images of another shape or rank, the model raises a ValueError naming the expected shape.
    """

    def __init__(
        self,
        image_shape=(2528, 2528, 3),
        num_classes=1000,
        crop_size=224,
        grid=12,
        crop_units=512,
        blocks=(2, 2, 2, 2),
        filters=(64, 128, 256, 512),
        stem="imagenet",
        activation="softmax",
        name="resnet18_crops",
        **kwargs,
    ):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        image_shape, num_classes, blocks_per_stage, filters = check_resnet_args(
            image_shape, num_classes, blocks, filters, stem, activation)
        if crop_units is not None:
            crop_units = int(crop_units)
            if crop_units < 1:
                raise ValueError(f"crop_units must be >= 1 (or None: no per-crop fc), got {crop_units}.")
        crop_size, grid = int(crop_size), int(grid)
        offsets = tuple(crop_offsets(side, crop_size, grid) for side in image_shape[:2])
        try:
            feature_map_size(crop_size, stem, len(filters))
        except ValueError as error:
            raise ValueError(f"crop_size {crop_size} px is too small for the ResNet trunk. {error}") from None

        dtype = kwargs.get("dtype")  # the dtype policy of the crops and the trunk (None: the global policy)
        images = keras.Input(image_shape, name="images")
        crops = CropGrid(crop_size, grid, name="crop_grid", dtype=dtype)(images)  # (B * grid^2, c, c, C)
        x = trunk(crops, blocks_per_stage, filters, stem, dtype)
        x = keras.layers.GlobalAveragePooling2D(name="global_pool", dtype=dtype)(x)
        width = filters[-1]
        if crop_units is not None:  # the ResNet's own fc: each crop's "logits"
            kernel_init, bias_init = dense_initializers(width)
            x = keras.layers.Dense(crop_units, kernel_initializer=kernel_init, bias_initializer=bias_init,
                                   name="crop_logits", dtype="float32")(x)
            width = crop_units
        x = CropSum(grid * grid, name="crop_sum", dtype="float32")(x)
        kernel_init, bias_init = dense_initializers(width)
        logits = keras.layers.Dense(num_classes, kernel_initializer=kernel_init, bias_initializer=bias_init,
                                    name="logits", dtype="float32")(x)
        super().__init__(inputs=images, outputs={"logits": logits}, name=name, **kwargs)
        if dtype is not None:  # keras.Model's functional __init__ drops `dtype` (as in ResNet)
            self.dtype_policy = keras.dtype_policies.get(dtype)

        self.crop_size, self.grid, self.crop_units = crop_size, grid, crop_units
        self.blocks, self.filters, self.stem, self.activation = blocks_per_stage, filters, stem, activation
        self._offsets = offsets

    @property
    def num_crops(self):
        """Crops per image: ``grid ** 2`` (144 for the paper's 12 x 12)."""
        return self.grid ** 2

    @property
    def crop_offsets(self):
        """(row offsets, column offsets) of the crops, `crop_offsets` on each axis; crop ``i * grid + j`` is
        ``images[:, rows[i]:rows[i] + crop_size, cols[j]:cols[j] + crop_size]``."""
        return self._offsets

    @property
    def feature_map_shape(self):
        """(height, width, channels) of the last stage's feature map of one crop (7x7x512 at 224 px)."""
        side = feature_map_size(self.crop_size, self.stem, len(self.filters))
        return (side, side, self.filters[-1])

    def _constructor_config(self):
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "crop_size": self.crop_size,
            "grid": self.grid,
            "crop_units": self.crop_units,
            "blocks": list(self.blocks),
            "filters": list(self.filters),
            "stem": self.stem,
            "activation": self.activation,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
