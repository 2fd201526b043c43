"""convert_to_tiled_tiff and tools/convert_to_tiff.py: JPEG / PNG / plain TIFF -> tiled pyramidal TIFF (level 0 the
source pixels exactly for lossless sources, TiledImage reads it), clear errors naming bad files (missing, not an
image, truncated, decompression bomb, destination = source), no partial output after a failure, and the CLI
(folders / globs / lists, a bad file among good ones, skipping existing outputs or --overwrite, the exit status)."""
import io
import os
import struct
import subprocess
import sys
import time
import warnings
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from saccade_zoo.data import tiled_tiff
from saccade_zoo.data.tiled_tiff import TiledImage, convert_to_tiled_tiff, pyramid_shapes
from tests.helpers import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "convert_to_tiff.py")
H, W = 150, 230  # with tile_size 64: levels 150x230, 75x115, 38x58


def _image(shape, dtype=np.uint8, seed=0):
    """Smooth content plus noise (like a photo: compresses, pyramid levels differ from the original)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    base = 0.5 + 0.3 * np.sin(x / 9.0) * np.cos(y / 13.0)
    if len(shape) == 3:
        base = base[..., None] * np.linspace(0.6, 1.0, shape[2])
    a = np.clip(base + rng.normal(0, 0.08, shape), 0, 1)
    return np.round(a * np.iinfo(dtype).max).astype(dtype)


def _crafted_png(width, height):
    """A PNG whose header claims width x height (8-bit grey) with almost no data: a decompression bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{name: (path, expected level 0)} of small source images."""
    d = tmp_path_factory.mktemp("sources")
    grey, rgb, rgba = _image((H, W)), _image((H, W, 3), seed=1), _image((H, W, 4), seed=2)
    grey16 = _image((H, W), np.uint16, seed=3)
    out = {}

    def pillow(name, a, **kw):
        Image.fromarray(a).save(d / name, **kw)
        out[name] = (str(d / name), a)

    pillow("grey.png", grey)
    pillow("rgb.png", rgb)
    pillow("rgba.png", rgba)
    pillow("grey16.png", grey16)
    Image.fromarray(rgb).save(d / "photo.jpg", quality=85)
    with Image.open(d / "photo.jpg") as im:  # JPEG is lossy: level 0 must be exactly Pillow's decode
        out["photo.jpg"] = (str(d / "photo.jpg"), np.asarray(im))
    tifffile.imwrite(d / "striped.tif", rgb, rowsperstrip=16)  # uncompressed, contiguous: memory-mapped
    out["striped.tif"] = (str(d / "striped.tif"), rgb)
    tifffile.imwrite(d / "striped_zlib.tif", grey16, rowsperstrip=16, compression="zlib", predictor=True)  # decoded
    out["striped_zlib.tif"] = (str(d / "striped_zlib.tif"), grey16)
    tifffile.imwrite(d / "tiled_planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate",
                     tile=(32, 32), compression="lzw")
    out["tiled_planar.tif"] = (str(d / "tiled_planar.tif"), rgb)
    tifffile.imwrite(d / "big_endian.tif", grey16, byteorder=">", rowsperstrip=40)
    out["big_endian.tif"] = (str(d / "big_endian.tif"), grey16)
    return out


def _leftovers(directory):
    """Hidden temporary files (.part outputs, .scratch decode buffers) left in ``directory``."""
    return [n for n in os.listdir(directory) if n.startswith(".")]


@pytest.mark.parametrize("name", ["grey.png", "rgb.png", "rgba.png", "grey16.png", "photo.jpg", "striped.tif",
                                  "striped_zlib.tif", "tiled_planar.tif", "big_endian.tif"])
def test_level0_is_the_source_and_the_output_is_a_tiled_pyramid(sources, tmp_path, name):
    src, a = sources[name]
    dst = str(tmp_path / "out" / "image.tif")  # the folder is created
    assert convert_to_tiled_tiff(src, dst, tile_size=64) == dst
    with tifffile.TiffFile(dst) as tif:
        page = tif.pages.first
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (64, 64)
        assert [p.shape[:2] for p in page.pages] == pyramid_shapes(H, W, 64)[1:] == [(75, 115), (38, 58)]
        assert all(p.is_reduced and p.is_tiled for p in page.pages)
        level0 = page.asarray()
        assert level0.dtype == a.dtype and level0.shape == a.shape
        np.testing.assert_array_equal(level0, a)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tiled TIFF: no "striped" / "decoded into memory" warning
        with TiledImage(dst, cache_tiles=0) as im:
            assert im.is_tiled and len(im.levels) == 3
            assert im.shape == (H, W, 1 if a.ndim == 2 else a.shape[2])
            region = im.read_region(10, 20, 74, 84, 64)  # identity resample: exactly the pixels
            expected = a[10:74, 20:84].reshape(64, 64, -1) / np.float32(np.iinfo(a.dtype).max)
            np.testing.assert_allclose(region, expected, rtol=0, atol=1e-6)
            assert im.tiles_decoded <= 4
            assert im.proxy(16).shape == (16, 16, im.shape[2])
    assert sorted(os.listdir(tmp_path / "out")) == ["image.tif"]  # no scratch or temporary file left


def test_other_options_and_modes(sources, tmp_path):
    src, a = sources["grey.png"]
    dst = convert_to_tiled_tiff(src, tmp_path / "plain.tif", tile_size=32, compression="none")
    with tifffile.TiffFile(dst) as tif:
        assert tif.pages.first.compression == 1 and tif.pages.first.tilewidth == 32
        np.testing.assert_array_equal(tif.pages.first.asarray(), a)
    # a palette PNG with a transparent entry becomes RGBA; a 1-bit PNG grey 0 / 255
    pal = Image.fromarray(a).convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    with Image.open(tmp_path / "pal.png") as im:
        expected = np.asarray(im.convert("RGBA"))
    with tifffile.TiffFile(convert_to_tiled_tiff(tmp_path / "pal.png", tmp_path / "pal.tif", 64)) as tif:
        np.testing.assert_array_equal(tif.pages.first.asarray(), expected)
    Image.fromarray(a > 128).save(tmp_path / "bits.png")
    with tifffile.TiffFile(convert_to_tiled_tiff(tmp_path / "bits.png", tmp_path / "bits.tif", 64)) as tif:
        np.testing.assert_array_equal(tif.pages.first.asarray(), np.where(a > 128, 255, 0))
    with pytest.raises(ValueError, match="multiple of 16"):
        convert_to_tiled_tiff(src, tmp_path / "x.tif", tile_size=100)


def test_bad_inputs_raise_errors_naming_the_file_and_write_nothing(sources, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    out = tmp_path / "out"
    (d / "text.png").write_text("not an image, just text\n")
    good = open(sources["grey.png"][0], "rb").read()
    (d / "truncated.png").write_bytes(good[:len(good) // 2])
    (d / "bomb.png").write_bytes(_crafted_png(100_000, 100_000))
    tif = open(sources["striped_zlib.tif"][0], "rb").read()
    (d / "truncated.tif").write_bytes(tif[:len(tif) // 2])
    tifffile.imwrite(d / "stack.tif", np.zeros((5, 40, 40), np.uint8), photometric="minisblack")
    tifffile.imwrite(d / "palette.tif", np.zeros((40, 40), np.uint8), photometric="palette",
                     colormap=np.zeros((3, 256), np.uint16))
    cases = [("missing.png", FileNotFoundError, "not found"),
             ("text.png", ValueError, "not an image"),
             ("truncated.png", ValueError, "truncated"),
             ("bomb.png", ValueError, r"100000 x 100000 = 10,000,000,000 pixels exceeds .*=1,000,000,000"),
             ("truncated.tif", ValueError, "truncated TIFF"),
             ("stack.tif", ValueError, "stack of 5 images"),
             ("palette.tif", ValueError, "PALETTE")]
    for name, error, what in cases:
        src = str(d / name)
        started = time.time()
        with pytest.raises(error, match=what) as info:
            convert_to_tiled_tiff(src, out / (name + ".tif"))
        assert src in str(info.value), (name, info.value)
        if name == "bomb.png":  # refused from the header: nothing decoded
            assert time.time() - started < 2
    # the guard's limit is max_pixels: a real PNG just over it
    src = sources["grey.png"][0]
    with pytest.raises(ValueError, match=f"{H} x {W} = {H * W:,} pixels exceeds .*max_pixels={H * W - 1:,}") as info:
        convert_to_tiled_tiff(src, out / "limit.tif", max_pixels=H * W - 1)
    assert src in str(info.value)
    assert not out.exists() or os.listdir(out) == []  # nothing written, not even a temporary
    convert_to_tiled_tiff(src, out / "limit.tif", max_pixels=H * W)  # at the limit: fine
    # the destination is the source (also through another spelling of the path)
    tiff = sources["striped.tif"][0]
    before = open(tiff, "rb").read()
    for dst in (tiff, os.path.join(os.path.dirname(tiff), ".", os.path.basename(tiff))):
        with pytest.raises(ValueError, match="is the source"):
            convert_to_tiled_tiff(tiff, dst)
    assert open(tiff, "rb").read() == before
    with pytest.raises(ValueError, match="is a directory"):
        convert_to_tiled_tiff(src, out)


def test_a_failed_or_interrupted_write_leaves_no_partial_output(sources, tmp_path, monkeypatch):
    src = sources["rgb.png"][0]
    dst = tmp_path / "image.tif"
    real = tiled_tiff.write_tiled_tiff

    def dies_half_way(path, array, **kwargs):
        with open(path, "wb") as f:  # a partial file under the temporary name
            f.write(b"II*\0" + b"\0" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(tiled_tiff, "write_tiled_tiff", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        convert_to_tiled_tiff(src, dst)
    assert os.listdir(tmp_path) == []
    # an existing output stays as it was until the new one is complete
    dst.write_bytes(b"previous output")
    monkeypatch.setattr(tiled_tiff, "write_tiled_tiff", lambda *a, **k: (real(*a, **k), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        convert_to_tiled_tiff(src, dst)
    assert dst.read_bytes() == b"previous output" and os.listdir(tmp_path) == ["image.tif"]
    monkeypatch.setattr(tiled_tiff, "write_tiled_tiff", real)
    convert_to_tiled_tiff(src, dst)
    with TiledImage(dst) as im:
        assert im.shape == (H, W, 3)


@pytest.fixture(scope="module")
def tool():
    """tools/convert_to_tiff.py as a module."""
    return load_tool(TOOL, "convert_to_tiff_tool")


def test_collect_inputs_skip_existing_and_overwrite(sources, tmp_path, tool):
    src_dir = os.path.dirname(sources["grey.png"][0])
    files, errors = tool.collect_inputs([src_dir, os.path.join(src_dir, "*.png"), sources["photo.jpg"][0],
                                         os.path.join(src_dir, "*.bmp"), str(tmp_path / "empty")])
    assert [os.path.basename(f) for f in files[:-1]] == sorted(os.listdir(src_dir))  # each once
    assert files[-1] == str(tmp_path / "empty")  # a missing path is kept: its conversion fails naming it
    assert len(errors) == 1 and "*.bmp: no file matches" in errors[0][1]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "grey.tif").write_bytes(b"already there")
    inputs = [sources["grey.png"][0], sources["rgb.png"][0]]
    log, err = io.StringIO(), io.StringIO()
    result = tool.convert_files(inputs, str(out_dir), tile_size=64, verbose=0, out=log, err=err)
    assert [os.path.basename(d) for _, d in result["converted"]] == ["rgb.tif"] and not result["failed"]
    assert [os.path.basename(d) for _, d in result["skipped"]] == ["grey.tif"]
    assert (out_dir / "grey.tif").read_bytes() == b"already there"
    assert "skipped" in log.getvalue() and "--overwrite" in log.getvalue()
    assert "1 converted, 1 skipped" in log.getvalue()
    result = tool.convert_files(inputs, str(out_dir), tile_size=64, overwrite=True, verbose=0, out=log, err=err)
    assert len(result["converted"]) == 2 and not result["skipped"] and err.getvalue() == ""
    with TiledImage(out_dir / "grey.tif") as im:
        assert im.shape == (H, W, 1) and len(im.levels) == 3
    # same name stem twice (grey.png and a grey.jpg): the second fails, the first is converted
    Image.fromarray(sources["grey.png"][1]).save(tmp_path / "grey.jpg")
    result = tool.convert_files([sources["grey.png"][0], str(tmp_path / "grey.jpg")], str(tmp_path / "stems"),
                                verbose=0, out=log, err=err)
    assert len(result["converted"]) == 1 and "same name stem" in result["failed"][0][1]
    # the output folder holding the source TIFF: destination = source is an error, not a skip
    tiff_dir = tmp_path / "inplace"
    tiff_dir.mkdir()
    tifffile.imwrite(tiff_dir / "a.tif", sources["grey.png"][1], rowsperstrip=8)
    result = tool.convert_files([str(tiff_dir)], str(tiff_dir), verbose=0, out=log, err=err)
    assert "is the source" in result["failed"][0][1] and not result["skipped"]


def _run_tool(*args):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, TOOL, *args], env=env, capture_output=True, text=True, timeout=300)


def test_cli_converts_the_good_files_of_a_folder_and_exits_non_zero_for_a_bad_one(sources, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("grey.png", "photo.jpg", "striped_zlib.tif"):
        (folder / name).write_bytes(open(sources[name][0], "rb").read())
    (folder / "broken.png").write_text("this is not a PNG")
    (folder / "notes.txt").write_text("not an image extension: ignored")
    out = tmp_path / "tiled"
    run = _run_tool(f"--input={folder}", f"--output_dir={out}", "--tile_size=64")
    assert run.returncode == 1, run.stdout + run.stderr
    assert sorted(os.listdir(out)) == ["grey.tif", "photo.tif", "striped_zlib.tif"]  # no partial broken.tif
    assert f"ERROR {folder / 'broken.png'}: not an image" in run.stderr
    assert "FAILED: 3 converted, 0 skipped (already there), 1 failed" in run.stderr
    assert run.stdout.count("converted ") == 3 and "3/4" in run.stdout  # result lines and the progress bar
    for name in ("grey.png", "photo.jpg", "striped_zlib.tif"):
        with tifffile.TiffFile(out / (os.path.splitext(name)[0] + ".tif")) as tif:
            np.testing.assert_array_equal(tif.pages.first.asarray(), sources[name][1])
    # all good (a list and a glob), an existing output replaced with --overwrite: exit 0
    (out / "grey.tif").write_bytes(b"stale")
    run = _run_tool(f"--input={folder / 'grey.png'},{folder / '*.jpg'}", f"--output_dir={out}", "--tile_size=64",
                    "--overwrite", "--verbose=0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Done: 2 converted, 0 skipped (already there), 0 failed" in run.stdout
    with TiledImage(out / "grey.tif") as im:
        assert im.shape == (H, W, 1)
