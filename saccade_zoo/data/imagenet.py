"""ImageNet 2012 through TFDS (manual download) with the Saccader paper's preprocessing.

Saccader (Elsayed et al. 2019) preprocessing, also used here for user images (:mod:`saccade_zoo.data.folders`):

* train: random resized crop (area 0.08-1 of the image, aspect ratio 3/4-4/3, ``tf.image.sample_distorted_
  bounding_box``; the whole image when no crop is found in 10 tries), bicubic resize to 224 (331 for
  Saccader-NASNet), random horizontal flip;
* eval: centre crop of the central 224/246 of the short side, then bicubic resize to the output size;
* both: pixels scaled to [0, 1], then standardised with ``IMAGENET_MEAN`` / ``IMAGENET_STD``.
* labels: +1 (``label_offset=1``) gives 1001 classes with 0 reserved, as in the Saccader TFDS pipeline;
  ``label_offset=0`` keeps TFDS's 1000.

ImageNet cannot be downloaded automatically: put ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar`` in
``manual_dir`` (see the TFDS ``imagenet2012`` page); pass ``manual_dir`` once to prepare, afterwards only
``data_dir``.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 224.0 / 246.0


def _to_rgb_uint8(image):
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}.")
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif image.shape[-1] == 4:
        image = image[..., :3]
    elif image.shape[-1] is not None and image.shape[-1] != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {image.shape[-1]}.")
    return image


def normalize(image):
    """uint8 0-255 (or float 0-255) -> float32 ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def _resize(image, size):
    image = tf.image.resize(tf.cast(image, tf.float32), (size, size), method="bicubic")
    return tf.clip_by_value(image, 0.0, 255.0)  # bicubic overshoots


def preprocess_train(image, size: int = 224, seed=None, normalize_output: bool = True):
    """Random resized crop + bicubic resize to ``size`` + random flip + mean/std. Returns float32 (size, size, 3)."""
    image = _to_rgb_uint8(image)
    shape = tf.shape(image)
    bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=bbox, min_object_covered=0.1, aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True, seed=seed or 0)
    crop = tf.slice(image, begin, crop_size)
    crop = _resize(crop, size)
    crop = tf.image.random_flip_left_right(crop, seed=seed)
    crop.set_shape((size, size, 3))
    return normalize(crop) if normalize_output else crop


def preprocess_eval(image, size: int = 224, crop_fraction: float = EVAL_CROP_FRACTION,
                    normalize_output: bool = True):
    """Centre crop of ``crop_fraction`` (224/246) of the short side, bicubic resize to ``size``, mean/std."""
    image = _to_rgb_uint8(image)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.cast(tf.round(tf.cast(tf.minimum(h, w), tf.float32) * crop_fraction), tf.int32)
    side = tf.maximum(side, 1)
    oy, ox = (h - side) // 2, (w - side) // 2
    crop = tf.image.crop_to_bounding_box(image, oy, ox, side, side)
    crop = _resize(crop, size)
    crop.set_shape((size, size, 3))
    return normalize(crop) if normalize_output else crop


def make_pipeline(ds, training: bool, size: int, batch_size: Optional[int], label_offset: int = 0,
                  shuffle_buffer: int = 10_000, seed: int = 0, drop_remainder: Optional[bool] = None):
    """Map (uint8 image, label) pairs through the train/eval preprocessing, shuffle, batch, prefetch."""
    if training and shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    fn = (lambda x: preprocess_train(x, size)) if training else (lambda x: preprocess_eval(x, size))
    ds = ds.map(lambda x, y: (fn(x), tf.cast(y, tf.int64) + label_offset), num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def imagenet_dataset(split: str = "train", data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                     size: int = 224, batch_size: Optional[int] = 256, label_offset: int = 1,
                     training: Optional[bool] = None, shuffle_buffer: int = 10_000, seed: int = 0,
                     drop_remainder: Optional[bool] = None):
    """``imagenet2012`` from TFDS, preprocessed as in the Saccader paper.

    Args:
      split: TFDS split ("train", "validation", "train[:1%]", ...).
      data_dir: TFDS data dir (where the prepared dataset lives).
      manual_dir: folder with the ImageNet tar files; if given, the dataset is prepared (once) from it.
      size: output side (224; 331 for Saccader-NASNet).
      batch_size: batch size (None = unbatched).
      label_offset: 1 -> labels 1..1000 (1001 classes, 0 reserved, as Saccader); 0 -> 0..999.
      training: train-time augmentation; default: ``split`` starts with "train".
    Returns a dataset of ``(image float32 (size, size, 3), label int64)``.
    """
    import tensorflow_datasets as tfds

    if label_offset not in (0, 1):
        raise ValueError(f"label_offset must be 0 or 1, got {label_offset}.")
    training = split.startswith("train") if training is None else training
    kwargs = {}
    if manual_dir is not None:
        kwargs["download_and_prepare_kwargs"] = {
            "download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)}
    try:
        ds = tfds.load("imagenet2012", split=split, data_dir=data_dir, as_supervised=True,
                       download=manual_dir is not None, shuffle_files=training, **kwargs)
    except (AssertionError, FileNotFoundError) as e:
        raise FileNotFoundError(
            f"imagenet2012 is not prepared in data_dir={data_dir!r}. Download ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar from image-net.org into a folder and pass it as manual_dir=... "
            f"(TFDS said: {e})") from e
    return make_pipeline(ds, training, size, batch_size, label_offset, shuffle_buffer, seed, drop_remainder)
