"""Real images for calibration and parity checks, made from the Fashion-MNIST sample shipped with the package.

100x100x1 models get the cluttered-item images of `saccade_zoo.data.cluttered` (one item, 8 clutter pieces).
Larger or RGB inputs (the 224x224x3 ImageNet presets; ImageNet is not available offline) get the same recipe on
a canvas of the model's size with items resized to ~28 % of the side (62 px at 224) and the grey canvas
replicated to the model's channels. These are real photographs of clothes, not ImageNet: good for checking that
an export computes what Keras computes, not for accuracy.
"""
import numpy as np


def real_images(image_shape, num_images, split="test", seed=0):
    """float32 (N, H, W, C) raw pixels in [0, 1] (no mean/std), plus int labels (N,)."""
    from saccade_zoo.data.cluttered import ClutteredConfig, generate_cluttered
    from saccade_zoo.data.sample import load_sample

    height, width, channels = (int(d) for d in image_shape)
    if height != width:
        raise ValueError(f"real_images makes square images; got image_shape {tuple(image_shape)}.")
    if int(num_images) < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}.")
    items, labels = load_sample(split)
    if height == 100:
        config = ClutteredConfig(canvas_size=100)
    else:
        item = max(28, int(round(height * 0.28)))
        config = ClutteredConfig(canvas_size=height, item_size=item, distractor_size=max(8, item * 8 // 28))
    data = generate_cluttered(items, labels, int(num_images), config, seed=seed)
    images = data["images"]
    if channels != 1:
        images = np.repeat(images, channels, axis=-1)
    return images.astype("float32"), data["labels"]


def describe(image_shape, num_images, split="test", seed=0):
    height = int(image_shape[0])
    what = "cluttered 100x100 Fashion-MNIST" if height == 100 else (
        f"Fashion-MNIST items pasted on a {height}x{height} clutter canvas, grey replicated to "
        f"{int(image_shape[2])} channel(s) (not ImageNet)")
    return f"{num_images} {what} images from the shipped sample's {split} split, seed {seed}"
