"""Regenerate the small Fashion-MNIST sample shipped at ``saccade_zoo/data/assets/fashion_mnist_sample.npz``.

How the sample is made (deterministic): from the Fashion-MNIST IDX files (Debian ``dataset-fashion-mnist``),
for each split and each of the 10 classes, take the first ``n/10`` indices of ``numpy.random.default_rng(seed)``'s
permutation of that class's indices (seed 0 for train, 1 for test); keep the chosen indices in source order.
Defaults: 3000 train (300 per class) + 1000 test (100 per class), saved with ``np.savez_compressed`` under keys
``train_images`` (uint8 N x 28 x 28), ``train_labels`` (int64), ``test_images``, ``test_labels`` and
``train_indices`` / ``test_indices`` (positions in the source files). Train and test come only from their own
source split, so no test item is ever in the train sample.

Run: ``python -m saccade_zoo.data.make_sample [--data_dir DIR] [--out PATH] [--num_train 3000] [--num_test 1000]``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from saccade_zoo.data.idx import DEFAULT_DATA_DIR, load_idx_split

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "assets", "fashion_mnist_sample.npz")


def balanced_indices(labels: np.ndarray, n: int, seed: int, num_classes: int = 10) -> np.ndarray:
    """``n // num_classes`` seeded indices per class, returned sorted (source order)."""
    if n % num_classes:
        raise ValueError(f"n={n} must be a multiple of num_classes={num_classes}.")
    rng = np.random.default_rng(seed)
    per = n // num_classes
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per:
            raise ValueError(f"class {c} has only {len(idx)} items, need {per}.")
        chosen.append(idx[rng.permutation(len(idx))[:per]])
    return np.sort(np.concatenate(chosen))


def make_sample(data_dir=None, out=DEFAULT_OUT, num_train: int = 3000, num_test: int = 1000) -> str:
    arrays = {}
    for split, n, seed in (("train", num_train, 0), ("test", num_test, 1)):
        images, labels = load_idx_split(data_dir, split)
        idx = balanced_indices(labels, n, seed)
        arrays[f"{split}_images"] = images[idx].astype(np.uint8)
        arrays[f"{split}_labels"] = labels[idx].astype(np.int64)
        arrays[f"{split}_indices"] = idx.astype(np.int32)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--num_train", type=int, default=3000)
    p.add_argument("--num_test", type=int, default=1000)
    a = p.parse_args(argv)
    path = make_sample(a.data_dir, a.out, a.num_train, a.num_test)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
