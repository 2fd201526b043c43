"""Convert JPEG / PNG / plain (striped or tiled) TIFF images into tiled pyramidal TIFFs, which
saccade_zoo.data.tiled_tiff.TiledImage reads region by region (only the tiles a glimpse window touches).

    python tools/convert_to_tiff.py --input=scans/ --output_dir=tiled/
    python tools/convert_to_tiff.py --input='photos/*.jpg,extra/big.png' --output_dir=tiled/ --tile_size=512
    python tools/convert_to_tiff.py --input=slide.tif --output_dir=tiled/ --max_pixels=4000000000 --overwrite

--input takes files, folders (their images: .png, .jpg, .jpeg, .tif, .tiff, .bmp, .gif, .webp, .ppm, .pgm, .pnm;
not recursive; hidden files skipped) and globs ('**' recurses), several joined by commas. Each image becomes
<output_dir>/<its name without extension>.tif (level 0 = the source pixels, exactly for a lossless --compression;
see saccade_zoo.data.tiled_tiff.convert_to_tiled_tiff for the formats and the memory it needs). An existing output
is skipped (with a message) unless --overwrite. A file that cannot be converted (missing, not an image, corrupt or
truncated, over --max_pixels, ...) prints an error naming it and the others are still converted; two inputs with the
same name stem (a.png and a.jpg) would write the same output, so the second one fails. Outputs are written under a
temporary name and renamed when complete: an interrupted run leaves no partial .tif.

Prints one line per file and a summary; exits 0 when every file was converted (or skipped as already there),
1 when any failed.
"""
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # saccade_zoo imports TensorFlow (for Keras)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("input", None, "Image files, folders and/or globs, comma-separated.", required=True)
flags.DEFINE_string("output_dir", None, "Where the .tif files go (created if needed).", required=True)
flags.DEFINE_integer("tile_size", 256, "Tile side in pixels (a multiple of 16; the paper's libvips setup: 256).",
                     lower_bound=16)
flags.DEFINE_enum("compression", "zlib", ["zlib", "zstd", "lzw", "jpeg", "none"],
                  "Tile compression: zlib (deflate, the default), zstd, lzw (all lossless), jpeg (lossy) or none.")
flags.DEFINE_integer("max_pixels", None, "Refuse images of more than this many pixels, from their header, before "
                     "decoding (decompression-bomb guard; default saccade_zoo.data.tiled_tiff.DEFAULT_MAX_PIXELS = "
                     "1,000,000,000; 0: no limit).", lower_bound=0)
flags.DEFINE_bool("overwrite", False, "Replace existing outputs (default: skip them).")
flags.DEFINE_integer("verbose", 1, "0: no progress bar (result lines only), 1: a progress bar over files.")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pnm")


def collect_inputs(specs):
    """(files, errors): the files that ``specs`` (files, folders, globs) name, in order, each once; and a (spec,
    message) per folder or glob that names no image. A path that does not exist is kept: its conversion fails
    naming it."""
    files, errors, seen = [], [], set()

    def add(path):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for spec in specs:
        spec = os.path.expanduser(spec.strip())
        if not spec:
            continue
        if os.path.isdir(spec):
            found = sorted(name for name in os.listdir(spec) if not name.startswith(".")
                           and name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(spec, name)))
            if not found:
                errors.append((spec, f"{spec}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})."))
            for name in found:
                add(os.path.join(spec, name))
        elif any(c in spec for c in "*?["):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not found:
                errors.append((spec, f"{spec}: no file matches."))
            for path in found:
                add(path)
        else:
            add(spec)
    return files, errors


def output_path(src, output_dir):
    return os.path.join(output_dir, os.path.splitext(os.path.basename(src))[0] + ".tif")


def same_file(a, b):
    try:
        return os.path.realpath(a) == os.path.realpath(b) or os.path.samefile(a, b)
    except OSError:
        return False


def describe(path):
    """'H x W x C dtype, N levels, S MB' of a written tiled TIFF."""
    import numpy as np
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        shape = page.shape if len(page.shape) == 3 else page.shape + (1,)
        levels = 1 + len(page.pages or [])
        dtype = np.dtype(page.dtype).name
    return (f"{shape[0]} x {shape[1]} x {shape[2]} {dtype}, {levels} level{'s' * (levels > 1)}, "
            f"{os.path.getsize(path) / 1e6:.1f} MB")


def convert_files(inputs, output_dir, tile_size=256, compression="zlib", max_pixels=None, overwrite=False,
                  verbose=1, out=None, err=None):
    """Convert every image that ``inputs`` names into ``output_dir``; returns {"converted": [(src, dst)],
    "skipped": [(src, dst)], "failed": [(src, message)]}. Result lines go to ``out`` (default stdout), errors to
    ``err`` (default stderr). ``max_pixels``: None for the library default, 0 for no limit."""
    from saccade_zoo.data.tiled_tiff import DEFAULT_MAX_PIXELS, convert_to_tiled_tiff

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else (max_pixels or None)
    files, errors = collect_inputs(inputs)
    result = {"converted": [], "skipped": [], "failed": list(errors)}
    for _, message in errors:
        print(f"ERROR {message}", file=err, flush=True)
    # Two sources with the same stem would write the same output: the first one wins, the others fail.
    planned, plan = {}, []
    for src in files:
        dst = output_path(src, output_dir)
        key = os.path.realpath(dst)
        if key in planned:
            plan.append((src, dst, f"{src}: its output {dst} is also {planned[key]}'s (same name stem); convert "
                                   "one of them into another --output_dir."))
        else:
            planned[key] = src
            plan.append((src, dst, None))

    bar = None
    if verbose and plan:
        import keras  # saccade_zoo imports it anyway

        bar = keras.utils.Progbar(len(plan), verbose=1, interval=0, unit_name="file")
    drawn = False  # the bar's line is on screen: start result lines on a fresh line
    tty = hasattr(out, "isatty") and out.isatty()

    def emit(line, stream):
        nonlocal drawn
        if drawn:
            out.write("\r\x1b[2K" if tty else "\n")
            out.flush()
            drawn = False
        print(line, file=stream, flush=True)

    for i, (src, dst, problem) in enumerate(plan):
        if problem is None and os.path.exists(dst) and not overwrite and not same_file(src, dst):
            result["skipped"].append((src, dst))
            emit(f"skipped {src}: {dst} already exists (--overwrite replaces it)", out)
        elif problem is not None:
            result["failed"].append((src, problem))
            emit(f"ERROR {problem}", err)
        else:
            started = time.time()
            try:
                convert_to_tiled_tiff(src, dst, tile_size=tile_size, compression=compression, max_pixels=limit)
                info = describe(dst)
            except Exception as e:  # noqa: BLE001 -- one bad file must not stop the others
                message = str(e) if src in str(e) else f"{src}: {type(e).__name__}: {e}"
                result["failed"].append((src, message))
                emit(f"ERROR {message}", err)
            else:
                result["converted"].append((src, dst))
                emit(f"converted {src} -> {dst} ({info}, {time.time() - started:.1f} s)", out)
        if bar is not None:
            bar.update(i + 1)
            drawn = i + 1 < len(plan)  # the last update ends its line itself
    n_conv, n_skip, n_fail = (len(result[k]) for k in ("converted", "skipped", "failed"))
    summary = f"{n_conv} converted, {n_skip} skipped (already there), {n_fail} failed, into {output_dir}"
    if n_fail:
        emit(f"\nFAILED: {summary}. The failed files:\n" + "\n".join(f"  {src}" for src, _ in result["failed"]), err)
    else:
        emit(f"\nDone: {summary}.", out)
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}: name the images with --input.")
    inputs = [spec for spec in FLAGS.input if spec.strip()]
    if not inputs:
        raise app.UsageError("--input names no file, folder or glob.")
    if FLAGS.tile_size % 16:
        raise app.UsageError(f"--tile_size must be a multiple of 16, got {FLAGS.tile_size}.")
    result = convert_files(inputs, FLAGS.output_dir, tile_size=FLAGS.tile_size, compression=FLAGS.compression,
                           max_pixels=FLAGS.max_pixels, overwrite=FLAGS.overwrite, verbose=FLAGS.verbose)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(app.run(main))
