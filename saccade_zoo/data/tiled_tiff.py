"""Huge images on disk: tiled pyramidal TIFF writing and tile-by-tile region reads.

Why: variational saccading's *localized spatial transformer* (Ramapuram et al., appendix 7.3/7.4) takes only the
corners of each glimpse window, reads just that region of the full-resolution image from disk and resamples it
to L x L (reference: 64 x 64). The paper used tiled / pyramid TIFFs read with libvips; here the same is done with
``tifffile`` + ``imagecodecs`` (pure Python + numpy, no libvips): only the tiles that a window touches are read
from the file and decoded (``page.dataoffsets`` / ``page.databytecounts`` + ``page.decode``).

Files written by :func:`write_tiled_tiff`: level 0 is the first IFD, reduced-resolution levels (each half the
previous, 2 x 2 box filter) are SubIFDs (``subfiletype=1``), tiles of 256 px, deflate (zlib) compression, BigTIFF
when larger than 2 GB. Any TIFF with the same layout (e.g. from libvips ``tiffsave(tile=True, pyramid=True,
subifd=True)``) reads the same way.

:class:`TiledImage` also opens striped TIFFs (only the strips a window touches are decoded; a warning says it is
slow) and, as a last resort, any image Pillow reads (PNG/JPEG: the whole image is decoded once; warned).
"""

from __future__ import annotations

import collections
import json
import math
import os
import threading
import warnings
from typing import Iterator, NoReturn, Optional, Tuple, Union

import numpy as np

DEFAULT_MAX_PIXELS = 1_000_000_000


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------

def _downsample2(a: np.ndarray, rows_per_chunk: Optional[int] = None) -> np.ndarray:
    """2 x 2 box-filter halving (ceil size, edge replicated), computed in row chunks (works on memmaps). By default a
    chunk's accumulator holds about 16 MB, whatever the image's width (each output row depends on its own two input
    rows only, so the chunking does not change the result)."""
    h, w = a.shape[:2]
    oh, ow = (h + 1) // 2, (w + 1) // 2
    out = np.empty((oh, ow) + a.shape[2:], a.dtype)
    acc_t = np.float64 if a.dtype.kind == "f" else np.uint32
    if rows_per_chunk is None:
        row_bytes = 2 * (w + 1) * int(np.prod(a.shape[2:], dtype=np.int64)) * np.dtype(acc_t).itemsize
        rows_per_chunk = max(1, (16 << 20) // max(1, row_bytes))
    for r0 in range(0, oh, rows_per_chunk):
        r1 = min(oh, r0 + rows_per_chunk)
        rows = np.asarray(a[2 * r0:min(h, 2 * r1)]).astype(acc_t)
        if rows.shape[0] < 2 * (r1 - r0):
            rows = np.concatenate([rows, rows[-1:]], 0)
        if w % 2:
            rows = np.concatenate([rows, rows[:, -1:]], 1)
        s = rows[0::2, 0::2] + rows[1::2, 0::2] + rows[0::2, 1::2] + rows[1::2, 1::2]
        out[r0:r1] = s / 4 if a.dtype.kind == "f" else (s + 2) // 4
        del rows, s  # free this chunk before the next is read
    return out


def _tiles(a: np.ndarray, ts: int, bar=None) -> Iterator[np.ndarray]:
    h, w = a.shape[:2]
    for y in range(0, h, ts):
        for x in range(0, w, ts):
            yield np.ascontiguousarray(a[y:y + ts, x:x + ts])
            if bar is not None:
                bar.add(1)


def pyramid_shapes(height: int, width: int, min_level_size: int) -> list:
    shapes = [(height, width)]
    while max(shapes[-1]) > min_level_size:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def write_tiled_tiff(path, array, tile_size: int = 256, min_level_size: Optional[int] = None,
                     compression: str = "zlib", compression_level: int = 6, predictor: bool = False,
                     verbose: int = 0) -> str:
    """Write ``array`` as a tiled pyramidal TIFF (level 0 + SubIFD reduced-resolution levels).

    Args:
      path: output ``.tif`` path.
      array: (H, W), (H, W, 1) grayscale or (H, W, 3/4) RGB(A) array, any numpy dtype tifffile stores (uint8 is
        typical). A ``np.memmap`` works: level 0 is written tile by tile from it, and each reduced level is built
        in row chunks from the previous one, so peak memory is about the 1/4-size first reduced level, not the
        image (the in-memory pyramid totals 1/3 of the array).
      tile_size: tile side (multiple of 16; default 256 as in the paper's libvips setup).
      min_level_size: stop adding levels once the longer side is <= this (default ``tile_size``).
      compression: tifffile compression ("zlib" = deflate, "zstd", "lzw", "jpeg", None).
      predictor: horizontal differencing predictor (smaller files, slower decode).
      verbose: 1 shows a ``keras.utils.Progbar`` over tiles.
    Returns ``path``.
    """
    import tifffile

    if tile_size <= 0 or tile_size % 16:
        raise ValueError(f"tile_size must be a positive multiple of 16, got {tile_size}.")
    a = array if isinstance(array, np.ndarray) else np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {a.shape}.")
    if a.dtype == np.bool_ or a.dtype.kind not in "uif":
        raise ValueError(f"unsupported dtype {a.dtype}; use uint8/uint16/float32.")
    min_level_size = tile_size if min_level_size is None else int(min_level_size)
    shapes = pyramid_shapes(a.shape[0], a.shape[1], max(1, min_level_size))
    rgb = a.ndim == 3
    kwargs = dict(
        tile=(tile_size, tile_size),
        photometric="rgb" if rgb else "minisblack",
        compression=compression,
        compressionargs={"level": compression_level} if compression in ("zlib", "zstd", "deflate") else None,
        predictor=predictor or None,
        metadata=None,
        dtype=a.dtype,
    )
    if rgb and a.shape[2] == 4:
        kwargs["extrasamples"] = ("unassalpha",)
    n_tiles = sum(math.ceil(h / tile_size) * math.ceil(w / tile_size) for h, w in shapes)
    bar = None
    if verbose:
        import keras
        bar = keras.utils.Progbar(n_tiles, verbose=verbose, unit_name="tile")
    bigtiff = a.nbytes * 4 / 3 > 2**31 - 2**25
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))) or ".", exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        level = a
        for k, shp in enumerate(shapes):
            if k:
                level = _downsample2(level)
                assert level.shape[:2] == shp
            tw.write(_tiles(level, tile_size, bar), shape=level.shape,
                     subifds=len(shapes) - 1 if k == 0 else None, subfiletype=1 if k else 0, **kwargs)
    return os.fspath(path)


def convert_to_tiled_tiff(src, dst, tile_size: int = 256, compression: Optional[str] = "zlib",
                          max_pixels: Optional[float] = DEFAULT_MAX_PIXELS, verbose: int = 0) -> str:
    """Convert a JPEG / PNG / plain (striped or tiled) TIFF into a tiled pyramidal TIFF (:func:`write_tiled_tiff`).

    The result is what :class:`TiledImage` reads region by region: level 0 holds the source pixels exactly (for a
    lossless ``compression``), reduced levels are SubIFDs. ``dst`` is written under a temporary name
    (``.<name>.<random>.part``) in its own folder, flushed to disk and renamed at the end: an interrupted or failed
    conversion never leaves a partial file under ``dst`` (a crash may leave the ``.part`` file; an existing ``dst``
    is replaced only once the new file is complete).

    Sources (recognised by content, not by name):

    * TIFF (tifffile): the first image of the file (its full-resolution level, for a pyramid). Uncompressed,
      contiguous, native-byte-order pixel data is memory-mapped read-only (``np.memmap``, no decoding); anything
      else (compressed, tiled, predictor, big-endian) is decoded segment by segment into a scratch memory-mapped
      file. Grey (MinIsBlack), RGB and JPEG-YCbCr, 1 / 3 / 4 samples (contiguous or planar), 8-64-bit integer or
      float samples; palette, MinIsWhite, CMYK, 1-bit, 2-sample, volumetric images and stacks of several images
      are refused with a ValueError saying so.
    * JPEG, PNG (and BMP, GIF's first frame, WebP, PPM/PGM) via Pillow, which has no region decoding: the whole
      image is decoded once. Stored as L (grey, 1-bit too), RGB (RGB, palette, CMYK, YCbCr, ...) or RGBA (any mode
      with alpha or a transparent palette); 16-bit grey stays uint16 (Pillow reduces 16-bit RGB PNGs to 8 bits);
      32-bit float grey stays float32. The EXIF orientation is not applied (as :class:`TiledImage` reading the
      file directly). The decoded image is copied band by band into a scratch memory-mapped file and Pillow's
      copy freed before the pyramid is built.

    The scratch file (H * W * C * bytes per sample) is made in ``dst``'s folder (not in $TMPDIR, which may be a RAM
    disk), its disk space reserved up front (``posix_fallocate``: a full disk is an OSError before decoding, not
    a crash while writing a memory map) and unlinked at once, so it vanishes with the process whatever happens.

    Memory (RAM beyond the interpreter) is the larger of two phases:

    1. decoding: for JPEG / PNG, Pillow's decoded image, H * W bytes for grey, 2 * H * W for 16-bit grey,
       4 * H * W for RGB / RGBA (Pillow stores 3 channels in 4 bytes), plus a ~16 MB band being copied out; it is
       freed before phase 2. For an uncompressed TIFF nothing: it is memory-mapped. Any other TIFF is decoded
       straight into the scratch file, tifffile reading 32 MB of compressed data at a time; its buffers peaked at
       about 90 MiB for the zlib TIFF below.
    2. :func:`write_tiled_tiff`: the first reduced level (H * W * C * bytes per sample / 4; the next, 1/16, is
       built while it is alive) plus ~16 MB of 2 x 2 box-filter accumulator chunks: :func:`_downsample2` filters a
       band of rows at a time, sized so that its accumulator (uint32; float64 for float images) holds about 16 MB
       whatever the width, and frees each band before reading the next. With the band's sums this comes to about
       30 MiB above the reduced levels, independent of the image's shape: 47 MiB in all for a 64 MB grey image,
       8000 x 8000, 2000 x 32000 or 32000 x 2000 alike. For JPEG / PNG and compressed TIFF sources phase 1 is
       the larger.

    Pages of the memory-mapped source and scratch file count in the resident set as well, but they are
    file-backed: the kernel writes them back and drops them under memory pressure. Measured with a thread
    polling /proc/self/status (peak anonymous memory, i.e. RAM that cannot be paged out, above a bare interpreter
    with numpy / tifffile / Pillow imported, 34 MiB resident of which 20 MiB anonymous; in brackets the peak
    resident set incl. file-backed pages, from getrusage, above the same; two runs each), each conversion in a
    fresh process, tile_size 256, zlib, synthetic images (smooth waves + uniform noise), 2-core AMD EPYC,
    tifffile 2026.3.3, Pillow 13.0, 2026-11-22:

      source (8000 x 8000: 64 MB grey, 192 MB RGB)      peak anon [RSS], MiB   time, s
      grey PNG (53 MB file)                             80 [141]               1.6-2.3
      grey JPEG, quality 90                             82 [144-145]           1.6-2.4
      grey striped TIFF, uncompressed (memory-mapped)   47 [110]               1.1-1.6
      grey striped TIFF, zlib (decoded into scratch)    90-91 [126]            1.4-1.7
      RGB PNG (160 MB file)                             267 [451]              5.7-7.6
      RGB JPEG, quality 90                              264 [449]              6.3-7.2
      grey striped TIFF, uncompressed, 2000 x 32000     47 [110]               1.0-1.4
      grey striped TIFF, uncompressed, 32000 x 2000     47 [110]               1.1-1.6

    So the same 64 MB grey image needs 47 MiB whatever its shape, and for JPEG / PNG the peak is Pillow's own copy
    (61 MiB grey, 244 MiB RGB) plus the band being copied out; the rest of the resident set is mostly the
    memory-mapped source or scratch file (61 MiB grey, 183 MiB RGB). :func:`write_tiled_tiff` alone on the
    memory-mapped 8000 x 8000 TIFF: 47 [109]. ``tools/convert_to_tiff.py`` adds TensorFlow's import
    (``saccade_zoo`` imports Keras): 666 MiB peak resident set in all for the grey PNG (``/usr/bin/time -v``),
    526 MiB of which is the import.

    Args:
      src: the source image file.
      dst: the output ``.tif`` path (its folder is created; an existing file is replaced).
      tile_size, compression: as :func:`write_tiled_tiff` (``compression`` None or "none": uncompressed). Both are
        checked (with a 16 x 16 probe image of the source's type) before anything is decoded.
      max_pixels: decompression-bomb guard, as :class:`TiledImage`'s: a source over H * W = ``max_pixels`` is
        refused from its header, before decoding (None: no limit).
      verbose: 1 shows :func:`write_tiled_tiff`'s progress bar over tiles.
    Returns ``dst``.
    Raises:
      FileNotFoundError: ``src`` does not exist.
      ValueError: naming the file: ``src`` is not an image, is corrupt or truncated, is over ``max_pixels``, or of an
        unsupported kind (see above); ``dst`` is ``src`` itself, or a folder; a bad ``tile_size`` / ``compression``.
      OSError: ``dst``'s folder cannot be written, or has no room for the scratch file or the output.
    """
    import contextlib
    import errno
    import io
    import tempfile
    import uuid

    import tifffile

    src, dst = os.fspath(src), os.fspath(dst)
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size <= 0 or tile_size % 16:
        raise ValueError(f"tile_size must be a positive multiple of 16, got {tile_size!r}.")
    if compression is not None and str(compression).lower() == "none":
        compression = None
    if os.path.isdir(src):
        raise ValueError(f"{src}: is a directory, not an image file.")
    if not os.path.isfile(src):
        raise FileNotFoundError(f"Image file not found: {src}")
    if os.path.realpath(src) == os.path.realpath(dst) or (os.path.exists(dst) and os.path.samefile(src, dst)):
        raise ValueError(f"{dst}: the destination is the source file {src} itself; write the tiled TIFF to another "
                         "path.")
    if os.path.isdir(dst):
        raise ValueError(f"{dst}: the destination is a directory; give a file path, e.g. "
                         f"{os.path.join(dst, os.path.splitext(os.path.basename(src))[0] + '.tif')}.")
    out_dir = os.path.dirname(os.path.abspath(dst))

    def check_pixels(h, w):
        if max_pixels is not None and h * w > max_pixels:
            raise ValueError(
                f"{src}: {h} x {w} = {h * w:,} pixels exceeds the limit max_pixels={int(max_pixels):,} "
                "(decompression-bomb guard). If you trust the file, raise it: "
                f"convert_to_tiled_tiff(..., max_pixels={h * w}) or max_pixels=None.")

    def check_output_format(channels, dtype):
        """Fail now, not after decoding, when ``compression`` cannot store this kind of image (e.g. JPEG + uint16)."""
        dtype = np.dtype(dtype)
        if dtype == np.bool_ or dtype.kind not in "uif":
            raise ValueError(f"{src}: unsupported sample type {dtype}: use uint8 / uint16 / float32 images.")
        probe = np.zeros((16, 16, channels) if channels > 1 else (16, 16), dtype)
        try:
            tifffile.imwrite(io.BytesIO(), probe, tile=(16, 16), photometric="rgb" if channels > 1 else "minisblack",
                             compression=compression, metadata=None,
                             extrasamples=("unassalpha",) if channels == 4 else None)
        except Exception as e:
            raise ValueError(f"compression={compression!r} cannot store {src}'s {dtype} images with {channels} "
                             f"channel(s) ({type(e).__name__}: {e}).") from e

    def scratch(shape, dtype):
        """A writable memory-mapped array backed by an unlinked, preallocated file in ``out_dir``."""
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        os.makedirs(out_dir, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=".scratch", dir=out_dir)
        try:
            try:
                os.posix_fallocate(fd, 0, nbytes)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise OSError(e.errno, f"no room in {out_dir} for the {nbytes / 2**20:,.0f} MiB scratch file "
                                           f"that {src} is decoded into ({os.strerror(e.errno)})") from e
                os.ftruncate(fd, nbytes)  # a file system without fallocate
            except AttributeError:  # pragma: no cover -- not POSIX
                os.ftruncate(fd, nbytes)
            with open(fd, "r+b", closefd=False) as f:
                return np.memmap(f, dtype=dtype, mode="r+", offset=0, shape=tuple(shape))
        finally:
            os.close(fd)
            os.unlink(name)

    def read_tiff():
        """(H, W[, C]) array of the TIFF's first image: a read-only memmap of the file, or decoded into scratch."""
        tif = None
        try:
            tif = tifffile.TiffFile(src)
            len(tif.pages)  # walks the IFD chain with tifffile's loop check (``series`` alone may loop forever)
            series = tif.series[0].levels[0]
            if len(series.pages) != 1:
                raise ValueError(f"{src}: a stack of {len(series.pages)} images (shape {series.shape}, axes "
                                 f"{series.axes}); only single images are converted: save them one per file.")
            page = series.keyframe
            h, w = _tag_int(src, page, "imagelength"), _tag_int(src, page, "imagewidth")
            check_pixels(h, w)
            if int(page.imagedepth) > 1:
                raise ValueError(f"{src}: volumetric TIFF (depth {page.imagedepth}); only 2-D images are converted.")
            photometric = tifffile.PHOTOMETRIC
            if page.photometric not in (photometric.MINISBLACK, photometric.RGB, photometric.YCBCR):
                kind = getattr(page.photometric, "name", page.photometric)
                raise ValueError(f"{src}: {kind} TIFF (colour palette, inverted grey, CMYK, ...) is "
                                 "not converted: save it as grey (MinIsBlack) or RGB first.")
            shape, axes, dtype = tuple(page.shape), page.axes, page.dtype
            if dtype is None or dtype == np.bool_ or np.dtype(dtype).kind not in "uif":
                raise ValueError(f"{src}: unsupported TIFF sample format ({page.bitspersample}-bit, "
                                 f"SampleFormat {page.sampleformat}).")
            if axes not in ("YX", "YXS", "SYX") or len(shape) != len(axes):
                raise ValueError(f"{src}: unsupported TIFF layout (shape {shape}, axes {axes}).")
            channels = 1 if axes == "YX" else shape[axes.index("S")]
            if channels not in (1, 3, 4):
                raise ValueError(f"{src}: {channels} samples per pixel; only grey (1), RGB (3) and RGBA (4) are "
                                 "converted.")
            size = os.path.getsize(src)
            ends = np.asarray(page.dataoffsets, np.int64) + np.asarray(page.databytecounts, np.int64)
            if len(ends) and ends.max() > size:
                raise ValueError(f"{src}: truncated TIFF (data runs to byte {int(ends.max())}, file has {size}).")
            native = np.dtype(dtype).itemsize == 1 or np.dtype(tif.byteorder + np.dtype(dtype).char).isnative
            memmappable = page.is_memmappable and native
        except Exception as e:
            if tif is not None:
                tif.close()
            _raise_naming(src, e, "corrupt or unreadable TIFF")
        try:
            check_output_format(channels, dtype)
            if memmappable:
                arr = np.memmap(src, dtype=np.dtype(dtype), mode="r", offset=int(page.dataoffsets[0]), shape=shape)
            else:
                out = scratch(shape, np.dtype(dtype).newbyteorder("="))
                try:
                    arr = page.asarray(out=out, buffersize=32 << 20)
                    if tuple(arr.shape) != shape:
                        raise ValueError(f"decoded shape {arr.shape}, expected {shape}")
                except Exception as e:
                    _raise_naming(src, e, "corrupt or unreadable TIFF")
        finally:
            tif.close()
        return np.moveaxis(arr, 0, -1) if axes == "SYX" else arr

    def read_pillow():
        """(H, W[, C]) scratch memmap of the image decoded by Pillow (L / RGB / RGBA / uint16 / float32)."""
        from PIL import Image

        formats = ["PNG", "JPEG", "BMP", "GIF", "WEBP", "PPM"]  # no EPS (Ghostscript) or other exotic decoders
        im = None
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # max_pixels is the guard here (checked before decoding)
        try:
            try:
                im = Image.open(src, formats=formats)
                w, h = im.size
                check_pixels(h, w)
                mode = im.mode
                if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                    target, dtype, channels = None, np.uint16, 1
                elif mode == "F":
                    target, dtype, channels = None, np.float32, 1
                elif mode in ("1", "L"):
                    target, dtype, channels = "L", np.uint8, 1
                elif mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in im.info):
                    target, dtype, channels = "RGBA", np.uint8, 4
                else:
                    target, dtype, channels = "RGB", np.uint8, 3
                if h < 1 or w < 1:
                    raise ValueError(f"{src}: empty image ({h} x {w}).")
                im.load()  # the whole image, in Pillow's memory
            except Exception as e:
                if im is not None:
                    im.close()
                _raise_naming(src, e, "not an image Pillow reads, or corrupt / truncated (supported: TIFF, "
                                      f"{', '.join(formats)})")
        finally:
            Image.MAX_IMAGE_PIXELS = old
        try:
            check_output_format(channels, dtype)
            out = scratch((h, w, channels) if channels > 1 else (h, w), dtype)
            rows = max(1, (16 << 20) // (w * 4 * channels))  # bands of about 16 MB
            try:
                for y in range(0, h, rows):
                    band = im.crop((0, y, w, min(h, y + rows)))
                    if target is not None and band.mode != target:
                        band = band.convert(target)
                    a = np.asarray(band)
                    if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
                        raise ValueError(f"{src}: 32-bit integer image with values outside 0..65535 (not converted).")
                    out[y:y + a.shape[0]] = a
            except Exception as e:
                _raise_naming(src, e, "corrupt or unsupported image")
        finally:
            im.close()
        return out

    with open(src, "rb") as f:
        magic = f.read(4)
    arr = read_tiff() if magic in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+") else read_pillow()
    tmp = os.path.join(out_dir, f".{os.path.basename(dst)}.{uuid.uuid4().hex[:12]}.part")
    try:
        write_tiled_tiff(tmp, arr, tile_size=tile_size, compression=compression, verbose=verbose)
        del arr
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the name is
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (best effort)
        dir_fd = os.open(out_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return dst


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------

def _raise_naming(path: str, e: Exception, what: str) -> NoReturn:
    """Re-raise ``e`` as a ValueError naming ``path``: as is when it already is one, else wrapped (chained).

    Corrupt files make tifffile / imagecodecs / numpy raise anything (struct errors, IndexError, zlib errors,
    MemoryError for absurd sizes, ...); callers get one clear error type. Only ``Exception`` is caught by the
    callers, so KeyboardInterrupt / SystemExit pass through untouched.
    """
    if isinstance(e, ValueError) and path in str(e):
        raise e
    raise ValueError(f"{path}: {what} ({type(e).__name__}: {e}).") from e


def _tag_int(path: str, page, name: str) -> int:
    """Integer TIFF page attribute ``name`` (e.g. "imagewidth"); a ValueError naming the file if it is not one."""
    v = getattr(page, name)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    what = f"{len(v)} values" if isinstance(v, (tuple, list, np.ndarray)) else repr(v)[:80]
    raise ValueError(f"{path}: corrupt TIFF: {name} is {what}, not one integer.")


class _Level:
    """One resolution level: knows how to fetch any pixel rectangle, decoding only the segments it needs.

    Thread-safe: the owner's cache and counters are changed under ``owner._lock``, file reads hold the tifffile
    file handle's lock, and segments are decoded outside both locks (concurrent reads decode in parallel).
    """

    def __init__(self, owner: "TiledImage", page=None, array=None):
        self.owner = owner
        self.page = page
        self.array = array
        if page is not None:
            self._init_page(owner.path, page)
        else:
            self.height, self.width = array.shape[:2]
            self.channels = array.shape[2] if array.ndim == 3 else 1
            self.dtype = array.dtype

    def _init_page(self, path: str, page):
        """Read and validate the level geometry (sizes, tile/strip layout, sample format) of a TIFF page."""
        self.height, self.width = _tag_int(path, page, "imagelength"), _tag_int(path, page, "imagewidth")
        self.channels = _tag_int(path, page, "samplesperpixel")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"{path}: corrupt TIFF: image size {self.height} x {self.width}.")
        if self.channels < 1:
            raise ValueError(f"{path}: corrupt TIFF: {self.channels} samples per pixel.")
        self.dtype = page.dtype
        if self.dtype is None or np.dtype(self.dtype).kind not in "buif":
            raise ValueError(f"{path}: unsupported TIFF sample format (SampleFormat {page.sampleformat}, "
                             f"{page.bitspersample}-bit, dtype {self.dtype}).")
        # tifffile calls a page tiled when TileWidth > 0: a TileWidth / TileLength tag of 0 is a corrupt tiled
        # page (not a striped one) and would divide by zero below.
        if page.is_tiled or 322 in page.tags or 323 in page.tags:
            self.seg_h, self.seg_w = _tag_int(path, page, "tilelength"), _tag_int(path, page, "tilewidth")
            for name, v in (("tile length", self.seg_h), ("tile width", self.seg_w)):
                if v < 1:
                    raise ValueError(f"{path}: corrupt TIFF: {name} {v}.")
            if self.owner.max_pixels is not None and self.seg_h * self.seg_w > self.owner.max_pixels:
                raise ValueError(f"{path}: corrupt TIFF: tile of {self.seg_h} x {self.seg_w} pixels exceeds "
                                 f"max_pixels={int(self.owner.max_pixels):,}.")
        else:
            rows = _tag_int(path, page, "rowsperstrip")
            self.seg_h, self.seg_w = min(rows or self.height, self.height), self.width
        self.segs_across = math.ceil(self.width / self.seg_w)
        self.segs_down = math.ceil(self.height / self.seg_h)
        n = self.segs_across * self.segs_down
        n_off, n_cnt = len(page.dataoffsets), len(page.databytecounts)
        if n_off < n or n_cnt < n:
            raise ValueError(f"{path}: unexpected segment layout ({n} segments of {self.seg_h} x {self.seg_w} "
                             f"for {self.height} x {self.width} pixels; the file has {n_off} offsets and {n_cnt} "
                             "byte counts): planar or multi-sample TIFF, or a corrupt one.")
        page.decode  # noqa: B018 -- tifffile builds the decoder on first use, not thread-safe: build it now

    @property
    def shape(self):
        return (self.height, self.width, self.channels)

    def _segment(self, index: int) -> np.ndarray:
        """Segment (tile or strip) ``index`` as (rows, cols, C), from the owner's LRU cache or the file."""
        o = self.owner
        key = (id(self), index)
        with o._lock:
            cached = o._cache.get(key)
            if cached is not None:
                o._cache.move_to_end(key)
                return cached
            tif = o._tif
        if tif is None:
            raise ValueError(f"{o.path}: TiledImage is closed.")
        page = self.page
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if offset == 0 or count == 0:  # sparse (never written) tile
            seg = np.zeros((self.seg_h, self.seg_w, self.channels), self.dtype)
        else:
            fh = tif.filehandle
            with fh.lock:  # one seek + read at a time on the shared handle (tifffile's lazy tag reads use it too)
                if fh.closed:
                    raise ValueError(f"{o.path}: TiledImage is closed.")
                fh.seek(offset)
                data = fh.read(count)
            if len(data) != count:
                raise ValueError(f"{o.path}: truncated TIFF (segment {index} wants {count} bytes at offset "
                                 f"{offset}, file ends early).")
            with o._lock:
                o.bytes_read += count
            try:
                seg, _, _ = page.decode(data, index)
            except Exception as e:  # imagecodecs / tifffile decode errors
                raise ValueError(f"{o.path}: corrupt TIFF segment {index} ({type(e).__name__}: {e}).") from e
            if seg is None:
                raise ValueError(f"{o.path}: corrupt TIFF segment {index}: could not decode.")
            # (depth, rows, cols, samples); edge tiles / the last strip may hold only the rows and cols inside
            # the image.
            rows = min(self.seg_h, self.height - index // self.segs_across * self.seg_h)
            cols = min(self.seg_w, self.width - index % self.segs_across * self.seg_w)
            if (seg.ndim != 4 or seg.shape[0] != 1 or seg.shape[1] < rows or seg.shape[2] < cols
                    or seg.shape[3] != self.channels):
                raise ValueError(f"{o.path}: corrupt TIFF segment {index}: decoded shape {seg.shape}, expected "
                                 f"(1, {self.seg_h}, {self.seg_w}, {self.channels}).")
            seg = seg[0]
            with o._lock:
                o.tiles_decoded += 1
        if o.cache_tiles > 0:
            with o._lock:
                if o._tif is not None:  # not closed meanwhile
                    o._cache[key] = seg
                    o._cache.move_to_end(key)
                    while len(o._cache) > o.cache_tiles:
                        o._cache.popitem(last=False)
        return seg

    def read(self, r0: int, c0: int, r1: int, c1: int) -> np.ndarray:
        """Pixels [r0, r1) x [c0, c1) of this level, zero outside the image. Shape (r1-r0, c1-c0, C).

        Raises ValueError naming the file for a corrupt/truncated file, whatever fails inside.
        """
        out = np.zeros((r1 - r0, c1 - c0, self.channels), self.dtype)
        y0, y1 = max(r0, 0), min(r1, self.height)
        x0, x1 = max(c0, 0), min(c1, self.width)
        if y0 >= y1 or x0 >= x1:
            return out
        if self.array is not None:
            a = self.array[y0:y1, x0:x1]
            out[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = a.reshape(a.shape[:2] + (self.channels,))
            return out
        try:
            for ty in range(y0 // self.seg_h, (y1 - 1) // self.seg_h + 1):
                for tx in range(x0 // self.seg_w, (x1 - 1) // self.seg_w + 1):
                    seg = self._segment(ty * self.segs_across + tx)
                    sy0, sx0 = ty * self.seg_h, tx * self.seg_w
                    a0, a1 = max(y0, sy0), min(y1, sy0 + self.seg_h)
                    b0, b1 = max(x0, sx0), min(x1, sx0 + self.seg_w)
                    out[a0 - r0:a1 - r0, b0 - c0:b1 - c0] = seg[a0 - sy0:a1 - sy0, b0 - sx0:b1 - sx0]
        except Exception as e:
            _raise_naming(self.owner.path, e, "corrupt or unreadable TIFF")
        return out


def _as_hw(size) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"output size must be >= 1, got {size}.")
    return h, w


class TiledImage:
    """A huge image on disk, read region by region.

    ``TiledImage(path, max_pixels=1e9, cache_tiles=64)``; use as a context manager or call :meth:`close`.

    Attributes:
      shape: (H, W, C) of level 0 (C = 1 for grayscale, 3 for RGB, 4 for RGBA).
      levels: list of (H, W, C) per pyramid level, full resolution first.
      tiles_decoded, bytes_read: counters of segments decoded / compressed bytes read (for checks and benchmarks).

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a corrupt/truncated/unreadable file and for
    images over ``max_pixels`` (a decompression-bomb guard; pass a larger ``max_pixels`` to open bigger images).
    A corrupt file gives a ``ValueError`` naming the file whatever fails inside (tifffile, the codecs, numpy), both
    when opening and when reading (:meth:`read_region`, :meth:`proxy`, :meth:`read_level`); the level geometry
    (image and tile sizes, segment counts, samples per pixel) is checked when opening.
    Striped (untiled) TIFFs and non-TIFF images (PNG, JPEG, ... via Pillow) work but emit a warning: they are slow.

    Thread-safe: one instance can serve concurrent :meth:`read_region` calls (e.g. from a ``tf.data`` map with
    parallel calls); the tile cache (LRU of ``cache_tiles`` segments) is shared, tiles are decoded in parallel.
    """

    def __init__(self, path, max_pixels: Optional[float] = DEFAULT_MAX_PIXELS, cache_tiles: int = 64):
        self.path = os.fspath(path)
        self.max_pixels = max_pixels
        self.cache_tiles = int(cache_tiles)
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()
        self._tif = None
        self.tiles_decoded = 0
        self.bytes_read = 0
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"Image file not found: {self.path}")
        try:
            self._open_tiff()
        except _NotTiff:
            self._open_pillow()

    # -- opening ------------------------------------------------------------------------------------------------
    def _check_pixels(self, h, w):
        if self.max_pixels is not None and h * w > self.max_pixels:
            raise ValueError(
                f"{self.path}: {h} x {w} = {h * w:,} pixels exceeds the limit max_pixels={int(self.max_pixels):,} "
                "(decompression-bomb guard). If you trust the file, raise it: "
                f"TiledImage(path, max_pixels={h * w}) or max_pixels=None.")

    def _open_tiff(self):
        import tifffile
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic[:2] not in (b"II", b"MM"):
            raise _NotTiff()
        try:
            self._tif = tifffile.TiffFile(self.path)
            # Reentrant lock on the shared file handle: _Level._segment seeks + reads under it, and so do
            # tifffile's own delayed tag reads, so concurrent read_region calls never interleave seek and read.
            self._tif.filehandle.lock = True
            self._levels = self._tiff_levels()
        except Exception as e:  # corrupt files make tifffile raise anything (struct.error, IndexError, ...)
            self.close()
            _raise_naming(self.path, e, "corrupt or unreadable TIFF")

    def _tiff_levels(self) -> list:
        """Validated :class:`_Level` list of the open TIFF, full resolution first."""
        page0 = self._tif.pages.first
        pages = [page0] + list(page0.pages or [])
        # Also accept pyramids stored as a series of top-level pages (e.g. SVS), when no SubIFDs. len() first: it
        # walks the IFD chain with tifffile's circular-reference check, without which ``series`` loops forever on
        # a (corrupt) IFD that points to itself.
        if len(pages) == 1 and len(self._tif.pages) > 1:
            try:
                levels = self._tif.series[0].levels
                if len(levels) > 1:
                    pages = [lv.keyframe for lv in levels]
            except Exception:
                pass
        self._check_pixels(_tag_int(self.path, page0, "imagelength"), _tag_int(self.path, page0, "imagewidth"))
        size = os.path.getsize(self.path)
        for p in pages:
            if p.planarconfig != 1 and p.samplesperpixel > 1 or int(p.imagedepth) > 1:
                raise ValueError(f"{self.path}: planar-separate or volumetric TIFFs are not supported; "
                                 "rewrite with write_tiled_tiff.")
            offsets = np.asarray(p.dataoffsets, np.int64)
            counts = np.asarray(p.databytecounts, np.int64)
            if offsets.shape != counts.shape:
                raise ValueError(f"{self.path}: corrupt TIFF: {offsets.size} segment offsets but {counts.size} "
                                 "byte counts.")
            ends = offsets + counts
            if len(ends) and ends.max() > size:
                raise ValueError(f"{self.path}: truncated TIFF (data runs to byte {int(ends.max())}, "
                                 f"file has {size}).")
        levels = [_Level(self, page=p) for p in pages]
        levels.sort(key=lambda lv: -lv.width)
        for lv in levels[1:]:
            if lv.channels != levels[0].channels:
                raise ValueError(f"{self.path}: corrupt TIFF pyramid: the {lv.height} x {lv.width} level has "
                                 f"{lv.channels} samples per pixel, the {levels[0].height} x {levels[0].width} "
                                 f"level {levels[0].channels}.")
        if not page0.is_tiled:
            warnings.warn(f"{self.path} is a striped (untiled) TIFF: region reads decode whole rows and are slow "
                          "for large images. Convert it with tools/convert_to_tiff.py.",
                          stacklevel=4)
        return levels

    def _open_pillow(self):
        try:
            from PIL import Image
        except ImportError as e:  # pragma: no cover
            raise ValueError(f"{self.path}: not a TIFF, and Pillow is not installed to read it.") from e
        try:
            # Pillow's own bomb check (Image.MAX_IMAGE_PIXELS, ~179M pixels) would refuse images below max_pixels
            # as "corrupt": it is off while opening, and max_pixels is checked on the header's size instead.
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(self.path)
            finally:
                Image.MAX_IMAGE_PIXELS = old
            with im:
                w, h = im.size
                self._check_pixels(h, w)
                old = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    mode = "L" if im.mode in ("1", "L") else ("RGBA" if "A" in im.mode else "RGB")
                    if im.mode in ("I;16", "I;16B", "I"):
                        arr = np.asarray(im)
                    else:
                        arr = np.asarray(im.convert(mode))
                finally:
                    Image.MAX_IMAGE_PIXELS = old
            if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
                raise ValueError(f"{self.path}: unexpected decoded image shape {arr.shape}.")
        except Exception as e:
            _raise_naming(self.path, e, "corrupt or unsupported image")
        warnings.warn(f"{self.path} is not a tiled TIFF: the whole image was decoded into memory. "
                      "Convert it with tools/convert_to_tiff.py (saccade_zoo.data.tiled_tiff.convert_to_tiled_tiff) "
                      "for fast region reads.",
                      stacklevel=3)
        self._levels = [_Level(self, array=arr)]

    # -- properties ----------------------------------------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, int, int]:
        return self._levels[0].shape

    @property
    def levels(self):
        return [lv.shape for lv in self._levels]

    @property
    def is_tiled(self) -> bool:
        return self._levels[0].page is not None and bool(self._levels[0].page.is_tiled)

    def close(self):
        with self._lock:
            tif, self._tif = self._tif, None
            self._cache.clear()
        if tif is not None:
            with tif.filehandle.lock:  # not under a concurrent read's seek + read
                tif.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return f"TiledImage({self.path!r}, shape={self.shape}, levels={len(self._levels)})"

    # -- reading -------------------------------------------------------------------------------------------------
    def level_scale(self, level: int) -> Tuple[float, float]:
        """(sy, sx): level pixels per level-0 pixel. A level of a power-of-two pyramid (``write_tiled_tiff``: level k
        pixel j covers level-0 pixels [j 2^k, (j + 1) 2^k), so its side is ceil(side / 2^k)) has exactly 2^-k, also
        for odd sides; other pyramids get the ratio of the sides. (The plain ratio, ceil(H / 2) / H for an odd H,
        misplaced windows by up to a pixel per level towards the far edge.)"""
        base, lv = self._levels[0], self._levels[level]
        scales = []
        for side, base_side in ((lv.height, base.height), (lv.width, base.width)):
            factor = 2.0 ** round(math.log2(base_side / side)) if side > 0 else 1.0
            exact = math.ceil(base_side / factor) == side or math.floor(base_side / factor) == side
            scales.append(1.0 / factor if exact else side / base_side)
        return scales[0], scales[1]

    def choose_level(self, win_h: float, win_w: float, out_h: int, out_w: int, factor: float = 2.0) -> int:
        """Coarsest level whose window is still >= ``factor`` x the output side (both axes); else level 0."""
        best = 0
        for k in range(len(self._levels)):
            sy, sx = self.level_scale(k)
            if win_h * sy >= factor * out_h and win_w * sx >= factor * out_w:
                best = k
        return best

    def read_region(self, y0: float, x0: float, y1: float, x1: float, out_size=64, dtype="float32",
                    level: Optional[int] = None) -> np.ndarray:
        """Read the window [y0, y1) x [x0, x1) (level-0 pixel coords, floats allowed) resampled to ``out_size``.

        Bilinear resampling with half-pixel centres (output pixel i samples window coordinate
        ``y0 + (i + 0.5) * (y1 - y0) / L``), from the coarsest pyramid level whose window is still >= 2 x the
        output side (level 0 when none is); only the tiles under the window are decoded. Parts of the window
        outside the image read as zeros (zero padding, blended bilinearly at the border).

        Args:
          out_size: L or (h, w).
          dtype: "float32" -> values scaled to [0, 1] for integer images (float images are returned as stored);
            "uint8" -> rounded 0-255 (for uint8 sources).
          level: force a pyramid level (index into ``levels``).
        Returns (h, w, C) array.
        """
        if self._levels[0].page is not None and self._tif is None:
            raise ValueError(f"{self.path}: TiledImage is closed.")
        oh, ow = _as_hw(out_size)
        if not (y1 > y0 and x1 > x0):
            raise ValueError(f"empty window y0={y0}, x0={x0}, y1={y1}, x1={x1}: need y1 > y0 and x1 > x0.")
        if level is None:
            level = self.choose_level(y1 - y0, x1 - x0, oh, ow)
        lv = self._levels[level]
        sy, sx = self.level_scale(level)
        ly = y0 * sy + (np.arange(oh) + 0.5) * ((y1 - y0) * sy / oh) - 0.5
        lx = x0 * sx + (np.arange(ow) + 0.5) * ((x1 - x0) * sx / ow) - 0.5
        r0, c0 = int(np.floor(ly[0])), int(np.floor(lx[0]))
        r1, c1 = int(np.floor(ly[-1])) + 2, int(np.floor(lx[-1])) + 2
        patch = lv.read(r0, c0, r1, c1).astype(np.float32)
        fy, fx = ly - r0, lx - c0
        iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
        wy, wx = (fy - iy).astype(np.float32), (fx - ix).astype(np.float32)
        iy1 = np.minimum(iy + 1, patch.shape[0] - 1)
        ix1 = np.minimum(ix + 1, patch.shape[1] - 1)
        top = patch[iy][:, ix] * (1 - wx)[None, :, None] + patch[iy][:, ix1] * wx[None, :, None]
        bot = patch[iy1][:, ix] * (1 - wx)[None, :, None] + patch[iy1][:, ix1] * wx[None, :, None]
        out = top * (1 - wy)[:, None, None] + bot * wy[:, None, None]
        return self._convert(out, lv.dtype, dtype)

    @staticmethod
    def _convert(out: np.ndarray, src_dtype, dtype):
        src_dtype = np.dtype(src_dtype)
        if np.dtype(dtype) == np.uint8:
            if src_dtype.kind == "f":
                return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
            if src_dtype.itemsize > 1:
                out = out * (255.0 / np.iinfo(src_dtype).max)
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}.")
        if src_dtype.kind in "ui":
            out = out / np.float32(np.iinfo(src_dtype).max)
        return out.astype(np.float32, copy=False)

    def proxy(self, size=32, dtype="float32") -> np.ndarray:
        """The whole image at ``size`` (J or (h, w)), bilinear from the coarsest level still >= the proxy size
        (variational saccading's proxy ``c``, e.g. 32 x 32)."""
        oh, ow = _as_hw(size)
        h, w = self.shape[:2]
        return self.read_region(0, 0, h, w, (oh, ow), dtype=dtype,
                                level=self.choose_level(h, w, oh, ow, factor=1.0))

    def read_level(self, level: int, dtype="float32") -> np.ndarray:
        """A whole pyramid level (checked against ``max_pixels``)."""
        lv = self._levels[level]
        self._check_pixels(lv.height, lv.width)
        return self._convert(lv.read(0, 0, lv.height, lv.width).astype(np.float32), lv.dtype, dtype)


class _NotTiff(Exception):
    pass


# ----------------------------------------------------------------------------------------------------------------
# Cluttered examples as TIFF files
# ----------------------------------------------------------------------------------------------------------------

LABELS_FILE = "labels.json"


def write_example_tiffs(out_dir, generator, num_examples: int, config, seed: int, tile_size: int = 256,
                        verbose: int = 0, to_uint8=None, extra_meta=None) -> str:
    """Write ``generator(i)`` for i < ``num_examples`` as uint8 tiled pyramidal TIFFs plus ``labels.json``.

    ``generator(i)`` returns a dict with ``image`` (H, W, 1) floats in [0, 1], ``label``, ``boxes`` and
    ``item_labels`` (as the cluttered and megapixel generators do). Creates ``out_dir/00000.tif, ...`` and
    ``out_dir/labels.json`` holding ``extra_meta``, the config (a dataclass), the seed and per example the file
    name, label, boxes (y0, x0, y1, x1 in image pixels) and item labels. ``to_uint8`` maps an image to uint8 (default:
    round to the nearest level). One example is in memory at a time. Returns ``out_dir``; read back with
    :func:`read_cluttered_tiffs`.
    """
    import dataclasses

    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    if to_uint8 is None:
        def to_uint8(image):
            return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    os.makedirs(out_dir, exist_ok=True)
    bar = None
    if verbose:
        import keras
        bar = keras.utils.Progbar(num_examples, verbose=verbose, unit_name="image")
    records = []
    for i in range(num_examples):
        ex = generator(i)
        name = f"{i:05d}.tif"
        write_tiled_tiff(os.path.join(out_dir, name), to_uint8(ex["image"][..., 0]), tile_size=tile_size)
        records.append({"file": name, "label": np.asarray(ex["label"]).tolist(), "boxes": ex["boxes"].tolist(),
                        "item_labels": ex["item_labels"].tolist()})
        if bar is not None:
            bar.update(i + 1)
    meta = {**(extra_meta or {}), "config": dataclasses.asdict(config), "seed": seed, "examples": records}
    with open(os.path.join(out_dir, LABELS_FILE), "w") as f:
        json.dump(meta, f)
    return os.fspath(out_dir)


def write_cluttered_tiffs(out_dir, items, labels, num_examples: int, config=None, seed: int = 0,
                          tile_size: int = 256, verbose: int = 0) -> str:
    """Write cluttered examples (see :mod:`saccade_zoo.data.cluttered`) as tiled pyramidal TIFFs
    (:func:`write_example_tiffs`: uint8 grayscale, labels.json with the label as an int, or a list of 10 for
    "identify"). Returns ``out_dir``. Read back with :func:`read_cluttered_tiffs`.
    """
    from saccade_zoo.data.cluttered import ClutteredConfig, ClutteredGenerator

    config = ClutteredConfig() if config is None else config
    return write_example_tiffs(out_dir, ClutteredGenerator(items, labels, config, seed), num_examples, config, seed,
                               tile_size, verbose)


def read_cluttered_tiffs(out_dir) -> Iterator[Tuple[str, Union[int, np.ndarray], np.ndarray]]:
    """Yield ``(tiff_path, label, boxes)`` for a directory made by :func:`write_cluttered_tiffs`.

    Open each path with :class:`TiledImage`. Raises FileNotFoundError for a missing labels file or image, and
    ValueError when the labels file and the images do not match.
    """
    lp = os.path.join(out_dir, LABELS_FILE)
    if not os.path.isfile(lp):
        raise FileNotFoundError(f"No {LABELS_FILE} in {out_dir}; write the directory with write_cluttered_tiffs.")
    with open(lp) as f:
        meta = json.load(f)
    examples = meta.get("examples")
    if not isinstance(examples, list):
        raise ValueError(f"{lp}: malformed labels file (no 'examples' list).")
    tifs = sorted(n for n in os.listdir(out_dir) if n.endswith(".tif"))
    if len(tifs) != len(examples):
        raise ValueError(f"{out_dir}: label/image count mismatch: {len(examples)} labels in {LABELS_FILE}, "
                         f"{len(tifs)} .tif files.")
    for rec in examples:
        p = os.path.join(out_dir, rec["file"])
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p} listed in {lp} is missing.")
        lab = rec["label"]
        lab = np.asarray(lab, np.float32) if isinstance(lab, list) else int(lab)
        yield p, lab, np.asarray(rec["boxes"], np.float32)
