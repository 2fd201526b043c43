"""Tiled pyramidal TIFF writing and tile-by-tile region reads."""

import collections
import json
import os
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile

from saccade_zoo.data.cluttered import ClutteredConfig
from saccade_zoo.data.sample import load_sample
from saccade_zoo.data.tiled_tiff import (TiledImage, read_cluttered_tiffs, write_cluttered_tiffs,
                                         write_tiled_tiff)


def _tf_crop_resize(a, y0, x0, y1, x1, size):
    import tensorflow as tf
    crop = a[y0:y1, x0:x1].astype(np.float32) / 255
    if crop.ndim == 2:
        crop = crop[..., None]
    return tf.image.resize(crop[None], (size, size), "bilinear").numpy()[0]


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    rng = np.random.default_rng(0)
    # Smooth-ish content so pyramid levels resemble the original.
    a = (rng.random((1100, 1300, 3)) * 255).astype(np.uint8)
    path = str(tmp_path_factory.mktemp("tif") / "rgb.tif")
    write_tiled_tiff(path, a, tile_size=128)
    return path, a


def test_layout_levels_and_tiles(rgb):
    path, a = rgb
    with tifffile.TiffFile(path) as t:
        p = t.pages[0]
        assert p.is_tiled and (p.tilelength, p.tilewidth) == (128, 128)
        assert p.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert [q.shape for q in p.pages] == [(550, 650, 3), (275, 325, 3), (138, 163, 3), (69, 82, 3)]
        assert all(q.is_reduced for q in p.pages)
        np.testing.assert_array_equal(p.asarray(), a)
    with TiledImage(path) as im:
        assert im.shape == (1100, 1300, 3) and len(im.levels) == 5 and im.is_tiled
        assert im.levels[1] == (550, 650, 3)


def test_region_exact_and_only_needed_tiles(rgb):
    path, a = rgb
    with TiledImage(path, cache_tiles=0) as im:
        r = im.read_region(10, 20, 74, 84, 64, dtype="uint8")
        np.testing.assert_array_equal(r, a[10:74, 20:84])  # identity resample
        assert im.tiles_decoded == 1
        before_bytes = im.bytes_read
        r = im.read_region(120, 250, 184, 314, 64, dtype="uint8")  # straddles 2 x 2 tiles
        np.testing.assert_array_equal(r, a[120:184, 250:314])
        assert im.tiles_decoded == 5
        with tifffile.TiffFile(path) as t:
            p = t.pages[0]
            per_tile = np.asarray(p.databytecounts)
        assert im.bytes_read - before_bytes < 5 * per_tile.max()
        assert im.bytes_read < per_tile.sum() / 10  # far less than the level's data
        f = im.read_region(0, 0, 64, 64, 64)
        assert f.dtype == np.float32 and f.max() <= 1.0
        np.testing.assert_allclose(f, a[:64, :64] / 255.0, atol=1e-6)


def test_bilinear_matches_tf_resize(rgb):
    path, a = rgb
    with TiledImage(path) as im:
        r = im.read_region(100, 200, 228, 328, 64, level=0)  # 2x downsample
        np.testing.assert_allclose(r, _tf_crop_resize(a, 100, 200, 228, 328, 64), atol=1e-5)
        r = im.read_region(100, 200, 132, 232, 64)  # upsample
        # At the border we sample the image's real neighbours (a spatial transformer on the whole image);
        # resizing an isolated crop replicates the crop edge instead: compare the interior.
        ref = _tf_crop_resize(a, 100, 200, 132, 232, 64)
        np.testing.assert_allclose(r[1:-1, 1:-1], ref[1:-1, 1:-1], atol=1e-5)
        assert not np.allclose(r[0], ref[0], atol=1e-3)
        r = im.read_region(100.5, 200.25, 132.5, 232.25, (16, 8))
        assert r.shape == (16, 8, 3)


def test_level_choice(rgb):
    path, a = rgb
    with TiledImage(path, cache_tiles=0) as im:
        assert im.choose_level(64, 64, 64, 64) == 0
        assert im.choose_level(256, 256, 64, 64) == 1  # 128 px at level 1 >= 2 x 64
        assert im.choose_level(1000, 1000, 64, 64) == 2  # level 3 window would be 125 < 128
        assert im.choose_level(1100, 1300, 32, 32) == 4
        assert im.choose_level(1100, 1300, 40, 40) == 3
        # A 1000 px window read from level 2 touches few tiles, and matches a level-0 read closely.
        r = im.read_region(0, 0, 1000, 1000, 64)
        assert im.tiles_decoded <= 9
        ref = _tf_crop_resize(a, 0, 0, 1000, 1000, 64)  # random pixels: compare means only
        assert abs(r.mean() - ref.mean()) < 0.01


def test_zero_padding_outside(rgb):
    path, a = rgb
    with TiledImage(path) as im:
        r = im.read_region(-32, -32, 32, 32, 64, dtype="uint8")
        assert (r[:32] == 0).all() and (r[:, :32] == 0).all()
        np.testing.assert_array_equal(r[32:, 32:], a[:32, :32])
        assert (im.read_region(5000, 5000, 5064, 5064, 16) == 0).all()
        with pytest.raises(ValueError, match="empty window"):
            im.read_region(10, 10, 10, 20, 8)


def test_proxy_and_grayscale(tmp_path):
    y, x = np.mgrid[0:700, 0:900]
    a = ((np.sin(y / 40.0) + np.cos(x / 55.0) + 2) * 60).astype(np.uint8)
    path = str(tmp_path / "g.tif")
    write_tiled_tiff(path, a[..., None], tile_size=256)
    with TiledImage(path, cache_tiles=0) as im:
        assert im.shape == (700, 900, 1) and len(im.levels) == 3
        p = im.proxy(32)
        assert p.shape == (32, 32, 1)
        assert im.tiles_decoded == 1  # level 2 (175 x 225) is one tile
        ref = _tf_crop_resize(a, 0, 0, 700, 900, 32)
        np.testing.assert_allclose(p, ref, atol=0.03)
        assert im.proxy((20, 40), dtype="uint8").dtype == np.uint8


def test_memmap_chunkwise_write_and_uint16(tmp_path):
    mm = np.lib.format.open_memmap(str(tmp_path / "big.npy"), "w+", np.uint16, (600, 520))
    mm[:] = np.arange(600 * 520, dtype=np.uint64).reshape(600, 520) % 65535
    path = write_tiled_tiff(str(tmp_path / "m.tif"), mm, tile_size=256, min_level_size=100)
    with TiledImage(path) as im:
        assert im.levels == [(600, 520, 1), (300, 260, 1), (150, 130, 1), (75, 65, 1)]
        r = im.read_region(300, 300, 340, 340, 40)
        np.testing.assert_allclose(r[..., 0], mm[300:340, 300:340] / 65535.0, atol=1e-6)


def test_pixel_limit(rgb):
    path, _ = rgb
    with pytest.raises(ValueError, match="max_pixels=1,000,000.*raise it"):
        TiledImage(path, max_pixels=1_000_000)
    with TiledImage(path, max_pixels=None) as im:
        assert im.shape[0] == 1100


def test_corrupt_and_truncated(tmp_path, rgb):
    path, _ = rgb
    data = open(path, "rb").read()
    bad = tmp_path / "garbage.tif"
    bad.write_bytes(b"II*\x00" + os.urandom(200))
    with pytest.raises(ValueError, match="garbage.tif"):
        TiledImage(str(bad))
    trunc = tmp_path / "trunc.tif"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="trunc.tif"):
        with TiledImage(str(trunc)) as im:
            im.read_region(0, 0, 1100, 1300, 64, level=0)
    # Corrupt tile payload: the read fails loudly, naming the file.
    with tifffile.TiffFile(path) as t:
        off = int(t.pages[0].dataoffsets[0])
    broken = bytearray(data)
    broken[off:off + 64] = b"\xff" * 64
    cor = tmp_path / "corrupt_tile.tif"
    cor.write_bytes(bytes(broken))
    with TiledImage(str(cor), cache_tiles=0) as im:
        with pytest.raises(ValueError, match="corrupt_tile.tif"):
            im.read_region(0, 0, 64, 64, 64)
    with pytest.raises(FileNotFoundError):
        TiledImage(str(tmp_path / "missing.tif"))
    notimg = tmp_path / "x.png"
    notimg.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="x.png"):
        TiledImage(str(notimg))


def _patch_tag(path, out, code, value: bytes, page=0):
    """Copy ``path`` to ``out`` with the in-IFD value of tag ``code`` (of page ``page``) overwritten."""
    data = bytearray(open(path, "rb").read())
    with tifffile.TiffFile(path) as t:
        tag = t.pages[page].tags[code]
        data[tag.valueoffset:tag.valueoffset + len(value)] = value
    out.write_bytes(bytes(data))
    return str(out)


def test_corrupt_geometry_named_clearly(tmp_path):
    """Bad tile sizes / layouts are caught when opening, with a clear message (not a ZeroDivisionError)."""
    a = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    src = write_tiled_tiff(str(tmp_path / "src.tif"), a, tile_size=16)
    for code, name in ((322, "tile width 0"), (323, "tile length 0")):
        bad = _patch_tag(src, tmp_path / f"t{code}.tif", code, b"\0\0\0\0")
        with pytest.raises(ValueError, match=f"t{code}.tif: corrupt TIFF: {name}"):
            TiledImage(bad)
    bad = _patch_tag(src, tmp_path / "w0.tif", 256, b"\0\0\0\0")  # ImageWidth 0
    with pytest.raises(ValueError, match="w0.tif: corrupt TIFF: image size 64 x 0"):
        TiledImage(bad)
    bad = _patch_tag(src, tmp_path / "big.tif", 256, struct.pack("<I", 4096))  # more tiles than offsets
    with pytest.raises(ValueError, match="big.tif: unexpected segment layout"):
        TiledImage(bad)
    # A huge tile: the decompression-bomb guard applies to tiles too.
    bad = _patch_tag(src, tmp_path / "hugetile.tif", 322, struct.pack("<I", 1 << 20))
    with pytest.raises(ValueError, match="hugetile.tif: corrupt TIFF: tile of 16 x 1048576 pixels exceeds"):
        TiledImage(bad, max_pixels=1 << 20)


def test_self_referencing_ifd_does_not_hang(tmp_path):
    """An IFD chain ending in an empty IFD that points to itself made tifffile's ``series`` loop forever."""
    a = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48).astype(np.uint8)
    src = write_tiled_tiff(str(tmp_path / "one.tif"), a, tile_size=16, min_level_size=64)  # one level, no SubIFDs
    data = bytearray(open(src, "rb").read())
    with tifffile.TiffFile(src) as t:
        first = t.pages.first.offset
    next_ptr = first + 2 + 12 * struct.unpack_from("<H", data, first)[0]
    data += b"\0" * (len(data) % 2)
    extra = len(data)
    struct.pack_into("<I", data, next_ptr, extra)
    data += struct.pack("<HI", 0, extra)  # no tags, next IFD = itself
    path = tmp_path / "loop.tif"
    path.write_bytes(bytes(data))
    result = []

    def open_and_read():
        with TiledImage(str(path)) as im:
            result.append(im.read_region(0, 0, 48, 48, 48, dtype="uint8")[..., 0])

    th = threading.Thread(target=open_and_read, daemon=True)  # daemon: a regression fails, not hangs, the run
    th.start()
    th.join(timeout=60)
    assert not th.is_alive(), "TiledImage hangs on a self-referencing IFD"
    np.testing.assert_array_equal(result[0], a)


def test_read_errors_become_value_errors_naming_the_file(rgb):
    """Whatever a decoder raises while reading becomes a ValueError naming the file; KeyboardInterrupt does not."""
    path, a = rgb
    for exc, expected in ((MemoryError("absurd size"), ValueError), (IndexError("boom"), ValueError),
                          (KeyboardInterrupt(), KeyboardInterrupt)):
        with TiledImage(path, cache_tiles=0) as im:
            def decode(*args, exc=exc, **kwargs):
                raise exc
            for lv in im._levels:
                lv.page.decode = decode  # instance attribute shadows tifffile's cached decoder
            with pytest.raises(expected) as e:
                im.read_region(0, 0, 64, 64, 64)
            if expected is ValueError:
                assert path in str(e.value) and type(exc).__name__ in str(e.value)
            with pytest.raises(expected):
                im.proxy(16)
            with pytest.raises(expected):
                im.read_level(len(im.levels) - 1)


class _YieldingCache(collections.OrderedDict):
    """An LRU dict that lets other threads run right after each lookup: widens the window in which an unlocked
    cache races (a tile found, then evicted by another thread before ``move_to_end`` -> KeyError)."""

    def get(self, *args):
        value = super().get(*args)
        time.sleep(0)
        return value


def test_concurrent_reads_match_single_threaded(tmp_path):
    """8 threads hammer one image with a small cache (evictions all the time): every result equals the
    single-threaded one, no thread fails, the cache stays within its size and the counters add up."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    path = write_tiled_tiff(str(tmp_path / "mt.tif"), a, tile_size=16)
    windows = []
    for _ in range(150):
        if rng.random() < 0.7:  # small windows over a few tiles: cache hits and evictions of the same tiles
            h, w = rng.uniform(2, 20, 2)
            y0, x0 = rng.uniform(0, 40, 2)
        else:
            h, w = rng.uniform(4, 120, 2)
            y0, x0 = rng.uniform(-20, 200 - h / 2), rng.uniform(-20, 240 - w / 2)
        windows.append((y0, x0, y0 + h, x0 + w))
    with TiledImage(path, cache_tiles=0) as im:
        ref = [im.read_region(*win, 16) for win in windows]
        decoded_once, bytes_once = im.tiles_decoded, im.bytes_read

    def hammer(im):
        def work(k):
            order = np.random.default_rng(k).permutation(len(windows))
            return [(i, im.read_region(*windows[i], 16)) for i in order]
        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(work, range(8)))
        for res in results:
            for i, r in res:
                np.testing.assert_array_equal(r, ref[i])

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often
    try:
        for cache_tiles, yielding in ((3, True), (5, False), (0, False)):
            with TiledImage(path, cache_tiles=cache_tiles) as im:
                if yielding:
                    im._cache = _YieldingCache()
                hammer(im)
                assert len(im._cache) <= cache_tiles
                if cache_tiles == 0:  # every read decodes its tiles: exactly 8 x the single-threaded counts
                    assert (im.tiles_decoded, im.bytes_read) == (8 * decoded_once, 8 * bytes_once)
                else:
                    assert 0 < im.tiles_decoded <= 8 * decoded_once
    finally:
        sys.setswitchinterval(interval)


def test_striped_tiff_and_png_work_with_warning(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (300, 200), dtype=np.uint8)
    sp = str(tmp_path / "striped.tif")
    tifffile.imwrite(sp, a, rowsperstrip=16, compression="zlib")
    with pytest.warns(UserWarning, match="striped"):
        im = TiledImage(sp, cache_tiles=0)
    with im:
        np.testing.assert_array_equal(im.read_region(40, 50, 72, 82, 32, dtype="uint8")[..., 0], a[40:72, 50:82])
        assert im.tiles_decoded == 3  # only the 3 strips touched (rows 32-80)
    from PIL import Image
    pp = str(tmp_path / "plain.png")
    Image.fromarray(np.stack([a] * 3, -1)).save(pp)
    with pytest.warns(UserWarning, match="not a tiled TIFF"):
        im = TiledImage(pp)
    with im:
        assert im.shape == (300, 200, 3)
        np.testing.assert_array_equal(im.read_region(40, 50, 72, 82, 32, dtype="uint8")[..., 1], a[40:72, 50:82])
    with pytest.raises(ValueError, match="max_pixels"):
        TiledImage(pp, max_pixels=1000)


def test_closed_image_errors(rgb):
    path, _ = rgb
    im = TiledImage(path)
    im.close()
    with pytest.raises(ValueError, match="closed"):
        im.read_region(0, 0, 10, 10, 4)


def test_write_validation(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_tiled_tiff(str(tmp_path / "a.tif"), np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="tile_size"):
        write_tiled_tiff(str(tmp_path / "a.tif"), np.zeros((4, 4), np.uint8), tile_size=100)


def test_cluttered_tiffs_roundtrip(tmp_path):
    x, y = load_sample("test")
    cfg = ClutteredConfig(canvas_size=600, num_items=2, task="identify", num_distractors=20)
    out = write_cluttered_tiffs(str(tmp_path / "ds"), x[:50], y[:50], 3, cfg, seed=0)
    recs = list(read_cluttered_tiffs(out))
    assert len(recs) == 3
    for path, label, boxes in recs:
        assert label.shape == (10,) and boxes.shape == (2, 4)
        with TiledImage(path) as im:
            assert im.shape == (600, 600, 1) and len(im.levels) == 3
            y0, x0, y1, x1 = boxes[0]
            crop = im.read_region(y0, x0, y1, x1, 28)
            assert crop.mean() > 0.02  # the item is there
    meta = json.load(open(os.path.join(out, "labels.json")))
    meta["examples"].pop()
    json.dump(meta, open(os.path.join(out, "labels.json"), "w"))
    with pytest.raises(ValueError, match="count mismatch"):
        list(read_cluttered_tiffs(out))
    with pytest.raises(FileNotFoundError, match="labels.json"):
        list(read_cluttered_tiffs(str(tmp_path)))


def test_read_region_places_windows_exactly_on_every_level_of_an_odd_sized_pyramid(tmp_path):
    """Level k of write_tiled_tiff's pyramid maps level-0 pixels [j 2^k, (j + 1) 2^k) to pixel j, also for odd
    sides (65 -> 33 -> 17): a window on a linear ramp reads the same values from every level (the side ratio
    33 / 65 misplaced it by up to 1.8 px at level 2)."""
    from saccade_zoo.data.tiled_tiff import TiledImage, write_tiled_tiff

    ramp = np.repeat(np.arange(65, dtype=np.float32)[:, None], 65, axis=1)[..., None]  # value = row
    path = write_tiled_tiff(str(tmp_path / "ramp.tif"), ramp, tile_size=16, min_level_size=16)
    with TiledImage(path) as image:
        assert [shape[0] for shape in image.levels][:3] == [65, 33, 17]
        for level in range(3):
            assert image.level_scale(level) == (0.5 ** level, 0.5 ** level)
            window = image.read_region(40, 8, 56, 24, out_size=4, level=level)[:, 0, 0]
            # output pixel i samples y = 40 + 4 (i + 0.5); the value of row r sits at its centre r + 0.5
            np.testing.assert_allclose(window, [41.5, 45.5, 49.5, 53.5], atol=1e-4, err_msg=f"level {level}")
