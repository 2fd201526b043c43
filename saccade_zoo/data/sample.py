"""A small real Fashion-MNIST sample shipped with the package (no download needed).

``assets/fashion_mnist_sample.npz`` holds 3000 train items (300 per class) and 1000 test items (100 per class)
chosen deterministically from the Fashion-MNIST IDX files (train from the train split, test from the t10k split);
see :mod:`saccade_zoo.data.make_sample` for exactly how, and run ``python -m saccade_zoo.data.make_sample`` to
regenerate it. Use it for quick starts and tests; full data comes from :func:`saccade_zoo.data.idx.load_idx_split`.
"""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np

SAMPLE_PATH = os.path.join(os.path.dirname(__file__), "assets", "fashion_mnist_sample.npz")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def load_sample(split: str = "train") -> Tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 (N, 28, 28), labels int64 (N,))`` of the shipped sample; split "train" or "test"."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if not os.path.isfile(SAMPLE_PATH):
        raise FileNotFoundError(
            f"Shipped sample missing: {SAMPLE_PATH}. Regenerate it with `python -m saccade_zoo.data.make_sample` "
            "(needs `sudo apt-get install dataset-fashion-mnist`)."
        )
    with np.load(SAMPLE_PATH) as z:
        return z[f"{split}_images"].astype(np.uint8), z[f"{split}_labels"].astype(np.int64)
