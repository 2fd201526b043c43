"""Benchmark: 64 x 64 glimpse reads from a tiled pyramidal TIFF vs decoding the whole PNG/JPEG.

For each image size (square, RGB uint8, synthetic photo-like content: smooth colour waves + noise) the script
writes a tiled pyramidal TIFF (256 px tiles, deflate; saccade_zoo.data.tiled_tiff.write_tiled_tiff) and a JPEG
(and a PNG up to --png_max_size), then measures in a *fresh subprocess per measurement* (so peak RSS is comparable: VmHWM
of the worker, i.e. getrusage's max RSS without the value inherited from the parent at fork):

* tiled: ``TiledImage.read_region`` of a random window of side W (--windows) resampled to G x G (--glimpse),
  tile cache off (every read decodes its tiles; the OS page cache is warm since the files were just written);
* full decode: Pillow decodes the whole file, then crops the window and resizes it to G x G.

Reports median / p90 latency, peak RSS, and the ratio full-decode / tiled-read. Files go to a temp dir that is
removed afterwards (--keep to keep it).

  python tools/benchmark_tiled_reads.py --sizes=2000,8000,20000
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["2000", "8000", "20000"], "Square image sides.")
flags.DEFINE_list("windows", ["64", "512", "4000"], "Window sides (level-0 px) read into each glimpse.")
flags.DEFINE_integer("glimpse", 64, "Output glimpse side.")
flags.DEFINE_integer("reads", 200, "Glimpse reads per (size, window).")
flags.DEFINE_integer("decode_repeats", 3, "Full decodes per (size, format).")
flags.DEFINE_integer("png_max_size", 8000, "Also benchmark PNG up to this side (PNG encode of 20k RGB is slow).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality.")
flags.DEFINE_string("workdir", None, "Where to write files (default: a new temp dir).")
flags.DEFINE_bool("keep", False, "Keep the written files.")
flags.DEFINE_string("out_json", None, "Also write the results here as JSON.")
# Internal: run one measurement in this process.
flags.DEFINE_string("worker", None, "internal: 'tiled', 'decode' or 'noop'")
flags.DEFINE_string("path", None, "internal")
flags.DEFINE_integer("window", 64, "internal")

_HERE = os.path.dirname(os.path.abspath(__file__))
_TILED = os.path.join(_HERE, "..", "saccade_zoo", "data", "tiled_tiff.py")


def _load_tiled_module():
    # Load the module file directly so the worker does not import the rest of saccade_zoo (Keras/TF).
    import importlib.util
    spec = importlib.util.spec_from_file_location("tiled_tiff", _TILED)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _peak_rss_mb():
    """Peak RSS of this process. /proc/self/status VmHWM is reset at exec; ru_maxrss is not (after fork+exec it
    starts at the parent's RSS at fork time on Linux), so prefer VmHWM and fall back to getrusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker():
    import PIL.Image  # noqa: F401  same imports in every worker, so RSS baselines match
    import tifffile  # noqa: F401
    tt = _load_tiled_module()
    rng = np.random.default_rng(0)
    g = FLAGS.glimpse
    res = {}
    if FLAGS.worker == "noop":
        pass
    elif FLAGS.worker == "tiled":
        times = []
        with tt.TiledImage(FLAGS.path, max_pixels=None, cache_tiles=0) as im:
            h, w = im.shape[:2]
            win = min(FLAGS.window, h, w)
            for _ in range(FLAGS.reads):
                y0 = float(rng.uniform(0, h - win))
                x0 = float(rng.uniform(0, w - win))
                t = time.perf_counter()
                out = im.read_region(y0, x0, y0 + win, x0 + win, g)
                times.append(time.perf_counter() - t)
            assert out.shape[:2] == (g, g)
            res.update(tiles_per_read=im.tiles_decoded / FLAGS.reads, bytes_per_read=im.bytes_read / FLAGS.reads,
                       level=im.choose_level(win, win, g, g))
        res["times"] = times
    elif FLAGS.worker == "decode":
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = None
        times = []
        for _ in range(FLAGS.decode_repeats):
            t = time.perf_counter()
            with Image.open(FLAGS.path) as im:
                a = np.asarray(im.convert("RGB"))
            win = min(FLAGS.window, a.shape[0])
            y0 = int(rng.integers(0, a.shape[0] - win + 1))
            x0 = int(rng.integers(0, a.shape[1] - win + 1))
            crop = Image.fromarray(a[y0:y0 + win, x0:x0 + win]).resize((g, g), Image.BILINEAR)
            np.asarray(crop)
            times.append(time.perf_counter() - t)
            del a
        res["times"] = times
    res["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(res))


def _run_worker(**kw):
    args = [sys.executable, os.path.abspath(__file__)] + [f"--{k}={v}" for k, v in kw.items()]
    args += [f"--glimpse={FLAGS.glimpse}", f"--reads={FLAGS.reads}", f"--decode_repeats={FLAGS.decode_repeats}"]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker failed: {' '.join(args)}\n{out.stderr[-3000:]}")


def _make_image(path, n, rows=1000):
    """Synthetic RGB n x n uint8 written to a .npy memmap in row chunks."""
    a = np.lib.format.open_memmap(path, "w+", np.uint8, (n, n, 3))
    rng = np.random.default_rng(0)
    x = np.arange(n, dtype=np.float32)
    for r0 in range(0, n, rows):
        y = np.arange(r0, min(n, r0 + rows), dtype=np.float32)[:, None]
        base = [128 + 60 * np.sin(x / 97.0 + c) + 50 * np.cos(y / 53.0 + 2 * c) for c in range(3)]
        block = np.stack(base, -1) + rng.normal(0, 12, (len(y), n, 3)).astype(np.float32)
        a[r0:r0 + len(y)] = np.clip(block, 0, 255).astype(np.uint8)
    a.flush()
    return a


def _stats(times):
    t = np.asarray(times) * 1e3
    return float(np.median(t)), float(np.percentile(t, 90))


def main(argv):
    if FLAGS.worker:
        _worker()
        return
    tt = _load_tiled_module()
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None
    work = FLAGS.workdir or tempfile.mkdtemp(prefix="tiled_bench_")
    os.makedirs(work, exist_ok=True)
    results = {"noop": _run_worker(worker="noop", path="none"), "sizes": {}}
    print(f"import-only worker peak RSS: {results['noop']['peak_rss_mb']:.0f} MB", flush=True)
    try:
        for n in [int(s) for s in FLAGS.sizes]:
            r = results["sizes"][n] = {"files": {}, "write_s": {}, "tiled": {}, "decode": {}}
            npy = os.path.join(work, f"img{n}.npy")
            t = time.time()
            a = _make_image(npy, n)
            r["write_s"]["generate"] = time.time() - t
            tif = os.path.join(work, f"img{n}.tif")
            t = time.time()
            tt.write_tiled_tiff(tif, a, tile_size=256)
            r["write_s"]["tiff"] = time.time() - t
            r["files"]["tiff"] = tif
            t = time.time()
            jpg = os.path.join(work, f"img{n}.jpg")
            Image.fromarray(np.asarray(a)).save(jpg, quality=FLAGS.jpeg_quality)
            r["write_s"]["jpeg"] = time.time() - t
            r["files"]["jpeg"] = jpg
            if n <= FLAGS.png_max_size:
                t = time.time()
                png = os.path.join(work, f"img{n}.png")
                Image.fromarray(np.asarray(a)).save(png, compress_level=6)
                r["write_s"]["png"] = time.time() - t
                r["files"]["png"] = png
            del a
            os.remove(npy)
            r["mb"] = {k: os.path.getsize(v) / 1e6 for k, v in r["files"].items()}
            print(f"[{n}] written: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["write_s"].items())
                  + " | sizes MB: " + ", ".join(f"{k} {v:.1f}" for k, v in r["mb"].items()), flush=True)
            for win in [int(w) for w in FLAGS.windows]:
                if win > n:
                    continue
                res = _run_worker(worker="tiled", path=tif, window=win)
                res["median_ms"], res["p90_ms"] = _stats(res.pop("times"))
                r["tiled"][win] = res
                print(f"[{n}] tiled window {win}: median {res['median_ms']:.2f} ms, p90 {res['p90_ms']:.2f} ms, "
                      f"level {res['level']}, {res['tiles_per_read']:.1f} tiles/read, "
                      f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
            for fmt in [f for f in ("jpeg", "png") if f in r["files"]]:
                res = _run_worker(worker="decode", path=r["files"][fmt], window=64)
                res["median_ms"], res["p90_ms"] = _stats(res.pop("times"))
                r["decode"][fmt] = res
                print(f"[{n}] full {fmt} decode: median {res['median_ms']:.0f} ms, "
                      f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
            for k in list(r["files"]):
                os.remove(r["files"][k])
    finally:
        if not FLAGS.keep and not FLAGS.workdir:
            shutil.rmtree(work, ignore_errors=True)
    _print_table(results)
    if FLAGS.out_json:
        with open(FLAGS.out_json, "w") as f:
            json.dump(results, f, indent=1, default=str)


def _print_table(results):
    g = FLAGS.glimpse
    print()
    print("| image | read | median ms | p90 ms | peak RSS MB | full JPEG decode / read | full PNG decode / read |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, r in results["sizes"].items():
        dj = r["decode"].get("jpeg", {}).get("median_ms")
        dp = r["decode"].get("png", {}).get("median_ms")
        for win, t in r["tiled"].items():
            rj = f"{dj / t['median_ms']:.0f}x" if dj else "-"
            rp = f"{dp / t['median_ms']:.0f}x" if dp else "-"
            print(f"| {n}^2 RGB | tiled TIFF, {win} px window -> {g}^2 (level {t['level']}, "
                  f"{t['tiles_per_read']:.1f} tiles) | {t['median_ms']:.2f} | {t['p90_ms']:.2f} | "
                  f"{t['peak_rss_mb']:.0f} | {rj} | {rp} |")
        for fmt, d in r["decode"].items():
            print(f"| {n}^2 RGB | full {fmt.upper()} decode + crop -> {g}^2 | {d['median_ms']:.0f} | "
                  f"{d['p90_ms']:.0f} | {d['peak_rss_mb']:.0f} | | |")
    print(f"import-only worker peak RSS: {results['noop']['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    app.run(main)
