"""Real images for calibration and parity checks, made from the Fashion-MNIST sample shipped with the package.

100x100x1 models get the cluttered-item images of `saccade_zoo.data.cluttered` (one item, 8 clutter pieces).
Larger or RGB inputs (the 224x224x3 ImageNet presets; ImageNet is not available offline) get the same recipe on
a canvas of the model's size with items resized to ~28 % of the side (62 px at 224) and the grey canvas
replicated to the model's channels. These are real photographs of clothes, not ImageNet: good for checking that
an export computes what Keras computes, not for accuracy.
"""
import numpy as np


def labelled_task(model):
    """The cluttered Fashion-MNIST task whose labels mean what ``model``'s classes mean, or None.

    "single" for a 10-class softmax model named with Fashion-MNIST's classes (or not named at all: a model built
    from a cluttered preset without class names), "identify" for such a multi-label (sigmoid) model, "sum" for a
    19-class softmax model whose classes are the sums "0" ... "18". Anything else (ImageNet's 1001 classes, digits)
    has no labelled images here: its quantised exports are gated on agreement with Keras instead of accuracy.
    """
    from saccade_zoo.data.sample import FASHION_MNIST_CLASSES

    contract = model.contract
    names = list(model.class_names)
    height, width = (int(d) for d in model.inputs[0].shape[1:3])
    if height != width or height < 28:
        return None
    unnamed = names == [f"class_{i}" for i in range(len(names))]
    if len(names) == 10 and (names == list(FASHION_MNIST_CLASSES) or unnamed):
        return "identify" if contract.multi_label else "single"
    if len(names) == 19 and not contract.multi_label and names == [str(i) for i in range(19)]:
        return "sum"
    return None


def real_images(image_shape, num_images, split="test", seed=0, task="single"):
    """float32 (N, H, W, C) raw pixels in [0, 1] (no mean/std), plus labels (N,) (multi-hot (N, 10) for
    ``task="identify"``). ``task``: "single" (one item), "identify" or "sum" (two items), as in
    `saccade_zoo.data.cluttered`."""
    from saccade_zoo.data.cluttered import ClutteredConfig, generate_cluttered
    from saccade_zoo.data.sample import load_sample

    height, width, channels = (int(d) for d in image_shape)
    if height != width:
        raise ValueError(f"real_images makes square images; got image_shape {tuple(image_shape)}.")
    if int(num_images) < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}.")
    items, labels = load_sample(split)
    items_per_image = 1 if task == "single" else 2
    if height == 100:
        config = ClutteredConfig(canvas_size=100, num_items=items_per_image, task=task)
    else:
        item = max(28, int(round(height * 0.28)))
        config = ClutteredConfig(canvas_size=height, item_size=item, distractor_size=max(8, item * 8 // 28),
                                 num_items=items_per_image, task=task)
    data = generate_cluttered(items, labels, int(num_images), config, seed=seed)
    images = data["images"]
    if channels != 1:
        images = np.repeat(images, channels, axis=-1)
    return images.astype("float32"), data["labels"]


def describe(image_shape, num_images, split="test", seed=0, task="single"):
    height = int(image_shape[0])
    what = "cluttered 100x100 Fashion-MNIST" if height == 100 else (
        f"Fashion-MNIST items pasted on a {height}x{height} clutter canvas, grey replicated to "
        f"{int(image_shape[2])} channel(s) (not ImageNet)")
    labelled = "" if task == "single" else f", two items per image, {task} labels"
    return f"{num_images} {what} images from the shipped sample's {split} split, seed {seed}{labelled}"
