"""Readers for MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, ...).

The IDX format (LeCun et al.) is a big-endian header ``0x00 0x00 <dtype> <ndim>`` followed by ``ndim`` uint32
dimension sizes and the raw data. Image files are ``idx3`` (N, 28, 28) uint8; label files are ``idx1`` (N,) uint8.

Both gzipped (``.gz``) and raw files are accepted, and both naming conventions:
``train-images-idx3-ubyte[.gz]`` (the usual one) and ``train-images.idx3-ubyte[.gz]`` (some mirrors).
The test split is stored as ``t10k-*``.

Default directory: ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Tuple

import numpy as np

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"

_INSTALL_HINT = (
    "Install the real Fashion-MNIST files with `sudo apt-get install dataset-fashion-mnist` "
    "(they land in /usr/share/datasets/fashion-mnist), or point `data_dir` at a folder holding "
    "MNIST-format IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])."
)

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

_MAX_NDIM = 32  # numpy's limit before 2.0; a larger count in the header is corruption


def _read_bytes(path: str) -> bytes:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}. {_INSTALL_HINT}")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # bad gzip header / CRC, truncated or corrupt deflate stream
        raise ValueError(f"Could not read IDX file {path}: {e}") from e


def read_idx(path) -> np.ndarray:
    """Read any IDX file into a numpy array (native byte order)."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"IDX file {path} is truncated: {len(data)} bytes, no header.")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number 0x{data[:4].hex()} "
            "(expected 0x0000 <dtype 08-0E> <ndim>, e.g. 0x00000803 for images, 0x00000801 for labels)."
        )
    dtype = _DTYPES[data[2]]
    ndim = data[3]
    if ndim > _MAX_NDIM:
        raise ValueError(f"{path} is not a valid IDX file: header says {ndim} dimensions (at most {_MAX_NDIM}; "
                         "MNIST-style files have 1 or 3).")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header.")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    n = math.prod(shape)  # Python ints: a corrupt header's huge sizes cannot overflow into a "fitting" size
    expected = header + n * dtype.itemsize
    if len(data) < expected:
        raise ValueError(
            f"IDX file {path} is truncated: header says shape {shape} ({expected} bytes) "
            f"but the file holds {len(data)} bytes."
        )
    try:
        arr = np.frombuffer(data, dtype, count=n, offset=header).reshape(shape)
    except ValueError as e:  # e.g. an empty array with absurd other sizes: (0, 4e9, 4e9) is "too big" for numpy
        raise ValueError(f"IDX file {path} has an invalid shape {shape} in its header: {e}") from e
    return arr.astype(dtype.newbyteorder("="))


def load_idx_images(path) -> np.ndarray:
    """Load an ``idx3`` image file as uint8 (N, H, W)."""
    arr = read_idx(path)
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected an idx3 image file (N, H, W), got {arr.ndim} dimensions {arr.shape}.")
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 images, got {arr.dtype}.")
    return np.ascontiguousarray(arr)


def load_idx_labels(path) -> np.ndarray:
    """Load an ``idx1`` label file as int64 (N,)."""
    arr = read_idx(path)
    if arr.ndim != 1:
        raise ValueError(f"{path}: expected an idx1 label file (N,), got {arr.ndim} dimensions {arr.shape}.")
    return arr.astype(np.int64)


def find_idx_file(data_dir, split: str, kind: str) -> str:
    """Path of the ``kind`` ("images" or "labels") file of ``split`` in ``data_dir``; accepts all conventions."""
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if kind not in ("images", "labels"):
        raise ValueError(f"kind must be 'images' or 'labels', got {kind!r}.")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"IDX data directory does not exist: {data_dir}. {_INSTALL_HINT}")
    prefix = _SPLIT_PREFIX[split]
    code = "idx3" if kind == "images" else "idx1"
    candidates = []
    for sep in ("-", "."):
        base = f"{prefix}-{kind}{sep}{code}-ubyte"
        candidates += [base, base + ".gz"]
    for name in candidates:
        p = os.path.join(data_dir, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(
        f"No {split} {kind} IDX file in {data_dir} (looked for {', '.join(candidates)}). {_INSTALL_HINT}"
    )


def load_idx_split(data_dir=None, split: str = "train") -> Tuple[np.ndarray, np.ndarray]:
    """Load one split ("train" or "test") from a folder of IDX files.

    Returns ``(images uint8 (N, 28, 28), labels int64 (N,))``. ``data_dir=None`` means ``DEFAULT_DATA_DIR``.
    Raises ``FileNotFoundError`` (with the fix) when files are missing and ``ValueError`` when the image and
    label counts differ or a file is malformed.
    """
    data_dir = DEFAULT_DATA_DIR if data_dir is None else data_dir
    img_path = find_idx_file(data_dir, split, "images")
    lbl_path = find_idx_file(data_dir, split, "labels")
    images = load_idx_images(img_path)
    labels = load_idx_labels(lbl_path)
    if len(images) != len(labels):
        raise ValueError(
            f"Image/label count mismatch in {data_dir} ({split}): {len(images)} images in {img_path} "
            f"but {len(labels)} labels in {lbl_path}."
        )
    return images, labels


def write_idx(path, array: np.ndarray) -> None:
    """Write ``array`` (uint8 or int32/float) as an IDX file; gzip if ``path`` ends with ``.gz``.

    Used by tests and fixtures to make tiny MNIST-format folders.
    """
    array = np.asarray(array)
    inv = {v.newbyteorder("="): k for k, v in _DTYPES.items()}
    code = inv.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {array.dtype} cannot be stored in IDX.")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(_DTYPES[code]).tobytes()
    path = os.fspath(path)
    if path.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)
