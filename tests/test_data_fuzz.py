"""Seeded fuzzing of the file readers (issue 10): every mutated file either reads, with the right shapes, or
raises a ValueError that names the file -- never a ZeroDivisionError, struct.error, IndexError, MemoryError, ...

Mutations: byte overwrites (0, 0xFF, 1, random, one flipped bit), truncations, cuts (a slice removed) and
insertions (random bytes). Half of the positions fall on the file's structure (TIFF header / IFDs / tag values,
IDX header), where a mutation changes the layout rather than the pixels. Small files keep the run to seconds.
"""

import gzip
import logging
import warnings

import numpy as np
import pytest
import tifffile

from saccade_zoo.data.idx import load_idx_images, load_idx_labels, write_idx
from saccade_zoo.data.tiled_tiff import TiledImage, write_tiled_tiff

KINDS = ("flip", "truncate", "cut", "insert")


def _mutate(data: bytes, rng: np.random.Generator, hot: np.ndarray):
    """One random mutation of ``data``; ``hot`` holds the byte positions of the file's structure."""
    b = bytearray(data)

    def pos():
        if len(hot) and rng.random() < 0.5:
            return int(hot[rng.integers(len(hot))])
        return int(rng.integers(len(b)))

    kind = KINDS[rng.integers(len(KINDS))]
    if kind == "flip":
        for _ in range(int(rng.integers(1, 5))):
            i = pos()
            values = (0, 0xFF, 1, int(rng.integers(256)), b[i] ^ (1 << int(rng.integers(8))))
            b[i] = values[rng.integers(len(values))]
    elif kind == "truncate":
        del b[int(rng.integers(len(b))):]
    elif kind == "cut":
        i = pos()
        del b[i:i + int(rng.integers(1, 65))]
    else:
        i = pos()
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return kind, bytes(b)


def _fuzz(tmp_path, data: bytes, hot, suffix: str, read, n: int, seed: int):
    """Mutate ``data`` ``n`` times, calling ``read(path)`` on each; returns (counts, failures)."""
    rng = np.random.default_rng(seed)
    counts = {"read": 0, "ValueError": 0}
    failures = []
    for i in range(n):
        kind, mutant = _mutate(data, rng, hot)
        path = tmp_path / f"mut{i:04d}_{kind}{suffix}"
        path.write_bytes(mutant)
        try:
            read(str(path))
            counts["read"] += 1
        except ValueError as e:
            if path.name in str(e):
                counts["ValueError"] += 1
            else:
                failures.append(f"{path.name}: ValueError without the file name: {e}")
        except Exception as e:  # what the fuzz hunts: anything else (KeyboardInterrupt is not caught)
            failures.append(f"{path.name}: {type(e).__name__}: {e}")
    return counts, failures


def _report(counts, failures, n):
    return f"{len(failures)}/{n} bad outcomes ({counts}); first: " + "\n".join(failures[:10])


@pytest.fixture
def quiet_tifffile():
    """Mutated files make tifffile log a warning per odd tag; keep the output readable."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    log.setLevel(level)


def _tiff_source(tmp_path):
    y, x = np.mgrid[0:64, 0:64]
    rng = np.random.default_rng(0)
    a = np.stack([x * 2, y * 2, x + y], -1) + rng.integers(0, 8, (64, 64, 3))
    path = write_tiled_tiff(str(tmp_path / "src.tif"), a.astype(np.uint8), tile_size=16)  # levels 64, 32, 16
    data = open(path, "rb").read()
    structure = np.ones(len(data), bool)
    with tifffile.TiffFile(path) as t:
        page0 = t.pages.first
        for p in [page0] + list(page0.pages):
            for off, cnt in zip(p.dataoffsets, p.databytecounts):
                structure[off:off + cnt] = False
    return data, np.flatnonzero(structure)


def _read_tiff(path):
    """Open and read everything; a readable mutant must give consistent shapes."""
    with TiledImage(path, max_pixels=1 << 16, cache_tiles=4) as im:
        c = im.shape[2]
        assert len(im.shape) == 3 and im.levels[0] == im.shape
        for k, shape in enumerate(im.levels):
            assert im.read_level(k, dtype="uint8").shape == shape
        assert im.read_region(5, 7, 41, 59, 12).shape == (12, 12, c)
        assert im.read_region(-3, 40, 30, 90, (6, 10), dtype="uint8").shape == (6, 10, c)
        assert im.proxy(8).shape == (8, 8, c)


def test_fuzz_tiled_tiff(tmp_path, quiet_tifffile):
    data, hot = _tiff_source(tmp_path)
    _read_tiff(str(tmp_path / "src.tif"))  # the source itself reads
    n = 400
    counts, failures = _fuzz(tmp_path, data, hot, ".tif", _read_tiff, n, seed=10)
    assert not failures, _report(counts, failures, n)
    assert counts["ValueError"] > n // 4 and counts["read"] > 0  # the mutations do hit both outcomes


@pytest.mark.parametrize("what", ["images", "labels", "images.gz"])
def test_fuzz_idx(tmp_path, what):
    rng = np.random.default_rng(1)
    if what.startswith("images"):
        arr, load, ndim, dtype = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), load_idx_images, 3, np.uint8
    else:
        arr, load, ndim, dtype = rng.integers(0, 10, 40).astype(np.uint8), load_idx_labels, 1, np.int64
    src = tmp_path / ("src-idx-ubyte" + (".gz" if what.endswith(".gz") else ""))
    write_idx(src, arr)
    data = src.read_bytes()
    hot = np.arange(4 + 4 * arr.ndim)  # header (for .gz the gzip header + the start of the stream)
    if what.endswith(".gz"):
        assert gzip.decompress(data)[:4] == bytes([0, 0, 8, arr.ndim])

    def read(path):
        out = load(path)
        assert out.ndim == ndim and out.dtype == dtype

    n = 200
    counts, failures = _fuzz(tmp_path, data, hot, "-idx-ubyte" + (".gz" if what.endswith(".gz") else ""),
                             read, n, seed=20)
    assert not failures, _report(counts, failures, n)
    assert counts["ValueError"] > 0
