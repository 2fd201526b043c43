"""IDX readers and the shipped sample."""

import gzip
import os

import numpy as np
import pytest

from saccade_zoo.data import idx
from saccade_zoo.data.idx import load_idx_images, load_idx_labels, load_idx_split, write_idx
from saccade_zoo.data.sample import SAMPLE_PATH, load_sample


def _make_dir(tmp_path, sep="-", gz=True, n_train=12, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lbls = rng.integers(0, 10, n).astype(np.uint8)
        ext = ".gz" if gz else ""
        write_idx(tmp_path / f"{prefix}-images{sep}idx3-ubyte{ext}", imgs)
        write_idx(tmp_path / f"{prefix}-labels{sep}idx1-ubyte{ext}", lbls)
        out[prefix] = (imgs, lbls)
    return out


@pytest.mark.parametrize("sep,gz", [("-", True), ("-", False), (".", True), (".", False)])
def test_roundtrip_all_conventions(tmp_path, sep, gz):
    ref = _make_dir(tmp_path, sep, gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_idx_split(str(tmp_path), split)
        assert images.dtype == np.uint8 and images.shape == ref[prefix][0].shape
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images, ref[prefix][0])
        np.testing.assert_array_equal(labels, ref[prefix][1])


def test_missing_dir_and_files_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_idx_split(str(tmp_path / "nope"), "train")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)) as e:
        load_idx_split(str(tmp_path), "train")
    assert "apt-get install dataset-fashion-mnist" in str(e.value) and "data_dir" in str(e.value)
    with pytest.raises(ValueError, match="split"):
        load_idx_split(str(tmp_path), "validation")


def test_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((4,), np.uint8))
    with pytest.raises(ValueError, match="mismatch.*5 images.*4 labels"):
        load_idx_split(str(tmp_path), "train")


def test_bad_magic_and_truncation(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 100)
    with pytest.raises(ValueError, match="magic"):
        load_idx_images(p)
    write_idx(p, np.zeros((3, 28, 28), np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_idx_images(p)
    p.write_bytes(data[:9])
    with pytest.raises(ValueError, match="truncated"):
        load_idx_images(p)
    # A labels file passed as images: wrong ndim.
    write_idx(p, np.zeros((3,), np.uint8))
    with pytest.raises(ValueError, match="idx3"):
        load_idx_images(p)
    # Truncated gzip stream.
    gzp = tmp_path / "y-idx1-ubyte.gz"
    with gzip.open(gzp, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + np.array([1000], ">u4").tobytes() + b"\1" * 1000)
    gzp.write_bytes(gzp.read_bytes()[:20])
    with pytest.raises(ValueError, match=str(gzp.name)):
        load_idx_labels(gzp)


def test_corrupt_headers_and_streams_name_the_file(tmp_path):
    """Issue 10: absurd header sizes and corrupt deflate streams give a ValueError naming the file."""
    def write(name, header_dims, code=8, payload=b"\1" * 64):
        p = tmp_path / name
        p.write_bytes(bytes([0, 0, code, len(header_dims)]) + np.asarray(header_dims, ">u4").tobytes() + payload)
        return p

    big = 2**32 - 1
    # (2^32-1)^3 overflows int64: used to wrap to a size that "fits", then fail in numpy's reshape.
    p = write("huge-idx3-ubyte", [big, big, big])
    with pytest.raises(ValueError, match="huge-idx3-ubyte is truncated"):
        load_idx_images(p)
    p = write("empty-idx3-ubyte", [0, big, big])  # zero items but a shape numpy cannot hold
    with pytest.raises(ValueError, match="empty-idx3-ubyte has an invalid shape"):
        load_idx_images(p)
    p = write("deep-idx1-ubyte", [1] * 100)
    with pytest.raises(ValueError, match="deep-idx1-ubyte is not a valid IDX file: header says 100 dimensions"):
        load_idx_labels(p)
    gz = bytearray(gzip.compress(bytes([0, 0, 8, 1]) + np.array([100], ">u4").tobytes() + bytes(range(100)),
                                 mtime=0))
    gz[10] = 0xFF  # first deflate byte: "invalid block type" (zlib.error, not an OSError)
    p = tmp_path / "bad-idx1-ubyte.gz"
    p.write_bytes(bytes(gz))
    with pytest.raises(ValueError, match="bad-idx1-ubyte.gz"):
        load_idx_labels(p)


def test_sample_shapes_split_and_balance():
    assert os.path.getsize(SAMPLE_PATH) < 2.2e6
    for split, n in (("train", 3000), ("test", 1000)):
        x, y = load_sample(split)
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, n // 10))
        assert x.max() > 200  # real images, not zeros
    with pytest.raises(ValueError):
        load_sample("val")


@pytest.mark.skipif(not os.path.isdir(idx.DEFAULT_DATA_DIR), reason="dataset-fashion-mnist not installed")
def test_sample_matches_real_idx_files_and_regenerates(tmp_path):
    from saccade_zoo.data.make_sample import make_sample
    out = make_sample(out=str(tmp_path / "s.npz"))
    with np.load(out) as a, np.load(SAMPLE_PATH) as b:
        for k in b.files:
            np.testing.assert_array_equal(a[k], b[k])
        # Test items come from t10k, train items from train: compare with the source files.
        for split in ("train", "test"):
            images, labels = load_idx_split(None, split)
            ind = b[f"{split}_indices"]
            np.testing.assert_array_equal(images[ind], b[f"{split}_images"])
            np.testing.assert_array_equal(labels[ind], b[f"{split}_labels"])
