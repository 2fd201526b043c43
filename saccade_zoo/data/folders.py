"""A folder of class subfolders (``root/<class>/<image>``) for fine-tuning on your own images.

Class names are the sorted subfolder names; label i is ``class_names[i]``. Images (JPEG, PNG, BMP, GIF) are decoded
to RGB and preprocessed exactly like ImageNet in the Saccader paper (:mod:`saccade_zoo.data.imagenet`): random
resized crop + flip when training, centre crop 224/246 otherwise, bicubic resize, ImageNet mean/std.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from saccade_zoo.data.imagenet import make_pipeline

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def list_image_folder(directory, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Tuple[List[str], List[int], List[str]]:
    """``(paths, labels, class_names)`` of a class-subfolder tree (files sorted; hidden files skipped)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Image folder not found: {directory}")
    class_names = sorted(d for d in os.listdir(directory)
                         if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))
    if not class_names:
        raise ValueError(f"{directory} has no class subfolders; expected {directory}/<class_name>/<image files>.")
    exts = tuple(e.lower() for e in extensions)
    paths, labels, empty = [], [], []
    for i, c in enumerate(class_names):
        found = []
        for root, _, files in os.walk(os.path.join(directory, c)):
            found += [os.path.join(root, f) for f in files if f.lower().endswith(exts) and not f.startswith(".")]
        if not found:
            empty.append(c)
        found.sort()
        paths += found
        labels += [i] * len(found)
    if not paths:
        raise ValueError(f"No images ({', '.join(exts)}) found under {directory} "
                         f"(class folders: {', '.join(class_names)}).")
    if empty:
        raise ValueError(f"Class folders without images in {directory}: {', '.join(empty)} "
                         f"(looked for {', '.join(exts)}). Remove them or add images.")
    return paths, labels, class_names


def _check_readable(paths):
    """Header-check every file with Pillow, so a bad file fails here with its name, not deep inside tf.data."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return
    bad = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018  header only
        except Exception as e:  # noqa: BLE001
            bad.append(f"{p} ({type(e).__name__})")
    if bad:
        raise ValueError(f"{len(bad)} unreadable image file(s): {'; '.join(bad[:10])}"
                         + (" ..." if len(bad) > 10 else ""))


def image_folder_dataset(directory, size: int = 224, training: bool = False, batch_size: Optional[int] = 32,
                         shuffle_buffer: int = 10_000, seed: int = 0, label_offset: int = 0,
                         extensions: Sequence[str] = IMAGE_EXTENSIONS, validate: bool = True,
                         drop_remainder: Optional[bool] = None):
    """A dataset of ``(image float32 (size, size, 3), label int64)`` and the sorted ``class_names``.

    Args:
      directory: root holding one subfolder per class.
      size: output side (224 / 331 as in Saccader).
      training: random resized crop + flip + shuffling; else centre crop, fixed order.
      batch_size: None for unbatched.
      label_offset: added to labels (1 to line up with a 1001-class ImageNet head).
      validate: header-check all files up front (clear ValueError naming bad files).
    Raises FileNotFoundError for a missing directory, ValueError for no class folders, an empty class folder or
    unreadable images.
    """
    paths, labels, class_names = list_image_folder(directory, extensions)
    if validate:
        _check_readable(paths)

    def load(path, label):
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int64)))
    if training and shuffle_buffer:
        ds = ds.shuffle(min(len(paths), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = make_pipeline(ds, training, size, batch_size, label_offset, shuffle_buffer=0, seed=seed,
                       drop_remainder=drop_remainder)
    return ds, class_names
