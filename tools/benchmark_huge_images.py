"""Benchmark: classifying huge images from disk, variational saccading vs the paper's 144-crop ResNet-18 baseline.

Three measurements (numbers and the command in docs/benchmarks.md, "Huge images end to end"):

1. ``latency``: 2528 x 2528 grey tiled pyramid TIFFs classified from disk at batch 1 and batch 16 by
   * variational saccading (``saccade_zoo.inference.FilePredictor``: the proxy from pyramid level 4, the VRNN,
     T = 4 glimpse windows read concurrently, the crop classifier; preset ``variational_cluttered2528_identify``,
     7.4M parameters), and
   * the paper's baseline, ResNet-18 over 144 crops of 224 (preset ``resnet18_crops144_cluttered2528_identify``):
     the whole full-resolution level read from the same file, then the model.
   Per row: median seconds per image over ``--repeats`` timed batches after one warm-up batch, and peak memory
   above the loaded-model baseline (VmHWM at the end minus VmRSS after loading the model, in a fresh process per
   row). Ratios baseline / variational saccading in the same run.
2. ``memory``: peak RSS (VmHWM) of ``tools/predict.py`` on one 2528^2, 8000^2 and 20000^2 file each (fresh process
   each).
3. ``throughput``: images per second of ``tools/predict.py``'s predictor on a folder of 20000^2 files in batches of
   16, concurrent window reads (``--num_workers``) vs one read at a time, with the files in the OS page cache
   (warm) and, when run as root, right after dropping it (cold: every tile and tag comes from the disk), and where
   the time goes (open, proxy, plan, reads, classify).

4. ``megapixel``: the megapixel task's three models at batch 1 on 1500^2 megapixel TIFFs (made from the shipped
   sample's items): variational saccading (`variational_megapixel`), the CNN on the 180^2 view read from the pyramid
   (`convnet_megapixel180`), ResNet-18 over 49 crops of 224 (`resnet18_crops49_megapixel`).

Images: grey uint8 canvases with texture everywhere (uniform noise 0-31, so tiles do not compress to nothing) and
bright squares; 256 px tiles, deflate, the 2 x 2 box pyramid (``write_tiled_tiff``). The models are untrained
(weights do not change the cost; an untrained VRNN proposes windows of about 37% of the side). Files are written
once into --workdir (reused when present).

    .venv/bin/python tools/benchmark_huge_images.py --out_json=runs/bench_huge.json
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["latency", "memory", "throughput", "megapixel"], "Which measurements to run.")
flags.DEFINE_string("workdir", None, "Where the TIFFs and models go (default: a new temp dir, removed at the end).")
flags.DEFINE_list("batches", ["1", "16"], "Batch sizes of the latency rows.")
flags.DEFINE_integer("repeats", 3, "Timed batches per latency row (after one warm-up batch).")
flags.DEFINE_integer("baseline_repeats", 1, "Timed batches per baseline latency row (it takes seconds per image).")
flags.DEFINE_list("memory_sizes", ["2528", "8000", "20000"], "Image sides of the memory rows.")
flags.DEFINE_integer("folder_files", 48, "Files in the throughput folder (20000^2; 4 distinct images, the rest "
                     "hard links), read in batches of 16 after an untimed batch of 16 other files.")
flags.DEFINE_integer("throughput_side", 20000, "Image side of the throughput folder.")
flags.DEFINE_integer("num_workers", 8, "Concurrent window reads in the latency rows.")
flags.DEFINE_list("worker_counts", ["8", "2", "1"], "Read threads of the throughput rows (1: one read at a time).")
flags.DEFINE_string("vs_preset", "variational_cluttered2528_identify", "Variational saccading preset.")
flags.DEFINE_string("baseline_preset", "resnet18_crops144_cluttered2528_identify", "Baseline preset.")
flags.DEFINE_string("out_json", None, "Also write the results here.")
# internal: one measurement in this (fresh) process
flags.DEFINE_string("worker", None, "internal: vs | baseline")
flags.DEFINE_string("model", None, "internal")
flags.DEFINE_list("files", [], "internal")
flags.DEFINE_integer("batch", 1, "internal")
flags.DEFINE_integer("workers", 8, "internal")
flags.DEFINE_integer("first_batch", None, "internal: size of the untimed warm-up batch (default --batch)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _proc_mb(path, key):
    """A kB field of a /proc file (e.g. /proc/self/status VmHWM, /proc/meminfo MemAvailable) in MB."""
    with open(path) as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _status_mb(key):
    return _proc_mb("/proc/self/status", key)


def _meminfo_mb(key):
    return _proc_mb("/proc/meminfo", key)


def make_image(path, side, seed):
    """A side x side grey uint8 textured canvas as a tiled pyramid TIFF (built in a memmap, row chunk by chunk)."""
    from saccade_zoo.data.tiled_tiff import write_tiled_tiff

    if os.path.isfile(path):
        return path
    raw = path + ".raw"
    image = np.memmap(raw, dtype=np.uint8, mode="w+", shape=(side, side))
    rng = np.random.default_rng(seed)
    for r0 in range(0, side, 2048):
        r1 = min(side, r0 + 2048)
        image[r0:r1] = rng.integers(0, 32, (r1 - r0, side), dtype=np.uint8)
    for _ in range(30):
        s = int(rng.integers(side // 40, side // 10))
        y, x = rng.integers(0, side - s, 2)
        image[y:y + s, x:x + s] = rng.integers(128, 256)
    image.flush()
    write_tiled_tiff(path + ".part", image)
    del image
    os.remove(raw)
    os.replace(path + ".part", path)
    return path


# ------------------------------------------------------------------------------------------------------ workers
def worker_vs():
    from saccade_zoo.inference import FilePredictor, load_model

    model = load_model(FLAGS.model)
    base = _status_mb("VmRSS")
    files = list(FLAGS.files)
    first = FLAGS.first_batch or FLAGS.batch
    batches = [files[:first]] + [files[i:i + FLAGS.batch] for i in range(first, len(files), FLAGS.batch)]
    stages, times = {}, []
    with FilePredictor(model, num_workers=FLAGS.workers) as predictor:
        for n, batch in enumerate(batches):
            t0 = time.perf_counter()
            results = list(predictor.predict(batch, batch_size=FLAGS.batch))
            elapsed = time.perf_counter() - t0
            assert all(r.ok for r in results), [r.error for r in results]
            if n:  # the first batch warms up (tracing)
                times.append(elapsed / len(batch))
                for key, value in results[0].timings.items():
                    stages.setdefault(key, []).append(value / len(batch))
    levels = sorted({int(k) for r in results for k in r.levels})
    peak = _status_mb("VmHWM")
    return {"seconds_per_image": statistics.median(times),
            "stages": {k: statistics.median(v) for k, v in stages.items()},
            "baseline_rss_mb": base, "peak_rss_mb": peak, "above_baseline_mb": peak - base,
            "timed_batches": len(times), "levels": levels}


def worker_baseline():
    import keras

    import saccade_zoo
    from saccade_zoo.data.tiled_tiff import TiledImage

    model = keras.models.load_model(FLAGS.model, compile=False)
    base = _status_mb("VmRSS")
    files = list(FLAGS.files)
    batches = [files[i:i + FLAGS.batch] for i in range(0, len(files), FLAGS.batch)]
    times = []
    for n, batch in enumerate(batches):
        t0 = time.perf_counter()
        pixels = []
        for path in batch:  # the whole full-resolution level (or, for a smaller model, the image at its size)
            with TiledImage(path) as image:
                h, w = image.shape[:2]
                mh, mw = model.image_shape[:2]
                pixels.append(image.read_level(0, dtype="float32") if (h, w) == (mh, mw) else
                              image.read_region(0, 0, h, w, (mh, mw), dtype="float32"))
        x = saccade_zoo.preprocess(np.stack(pixels), model)
        del pixels
        logits = np.asarray(model(x, training=False)["logits"])
        assert np.all(np.isfinite(logits))
        elapsed = time.perf_counter() - t0
        if n:
            times.append(elapsed / len(batch))
    return {"seconds_per_image": statistics.median(times), "baseline_rss_mb": base,
            "peak_rss_mb": _status_mb("VmHWM"), "above_baseline_mb": _status_mb("VmHWM") - base,
            "timed_batches": len(times)}


def _drop_page_cache():
    """Drop the OS page cache (root only): the next reads come from the disk. True if it worked."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def run_worker(kind, model, files, batch, workers=1, first_batch=None):
    cmd = [sys.executable, os.path.abspath(__file__), f"--worker={kind}", f"--model={model}",
           f"--files={','.join(files)}", f"--batch={batch}", f"--workers={workers}",
           f"--first_batch={first_batch or batch}"]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def predict_tool_rss(model, path):
    code = ("import runpy, sys\n"
            f"sys.argv = ['predict.py', '--model={model}', '--inputs={path}', '--quiet']\n"
            "try:\n"
            f"    runpy.run_path({os.path.join(ROOT, 'tools', 'predict.py')!r}, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('VMHWM_KB', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"error": proc.stderr.strip()[-500:]}
    return {"peak_rss_mb": int(proc.stdout.split("VMHWM_KB")[-1].split()[0]) / 1024,
            "wall_s": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------------- driver
def main(argv):
    del argv
    if FLAGS.worker:
        out = worker_vs() if FLAGS.worker == "vs" else worker_baseline()
        print(json.dumps(out))
        return
    import keras

    import saccade_zoo

    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="bench_huge_")
    os.makedirs(workdir, exist_ok=True)
    keys = ("batches", "repeats", "baseline_repeats", "memory_sizes", "folder_files", "throughput_side", "num_workers",
            "worker_counts", "vs_preset", "baseline_preset")
    results = {"settings": {k: getattr(FLAGS, k) for k in keys}}

    def model_file(preset):
        path = os.path.join(workdir, f"{preset}.keras")
        if not os.path.isfile(path):
            keras.utils.set_random_seed(0)
            model = saccade_zoo.build(preset)
            results.setdefault("parameters", {})[preset] = int(model.count_params())
            model.save(path)
        return path

    vs_path = model_file(FLAGS.vs_preset)
    try:
        if "latency" in FLAGS.parts:
            batches = [int(b) for b in FLAGS.batches]
            count = max(batches) * (FLAGS.repeats + 1)
            t0 = time.perf_counter()
            files = [make_image(os.path.join(workdir, f"img2528_{i:03d}.tif"), 2528, i) for i in range(count)]
            print(f"wrote {count} 2528^2 files in {time.perf_counter() - t0:.1f} s", flush=True)
            base_path = model_file(FLAGS.baseline_preset)
            rows = results["latency"] = []
            per_image_mb = None
            for batch in batches:
                vs = run_worker("vs", vs_path, files[:batch * (FLAGS.repeats + 1)], batch, FLAGS.num_workers)
                print(f"batch {batch} variational saccading: {vs}", flush=True)
                available = _meminfo_mb("MemAvailable")
                if per_image_mb is not None and batch * per_image_mb > 0.8 * available:
                    # The baseline's activations grow with the batch: 144 crops per image through ResNet-18.
                    base = {"error": f"not run: batch {batch} needs about {batch * per_image_mb / 1024:.1f} GB "
                                     f"(batch 1: {per_image_mb:.0f} MB above the loaded model), "
                                     f"{available / 1024:.1f} GB available"}
                else:
                    base = run_worker("baseline", base_path, files[:batch * (FLAGS.baseline_repeats + 1)], batch)
                    if "error" not in base and batch == 1:
                        per_image_mb = base["above_baseline_mb"]
                print(f"batch {batch} 144-crop ResNet-18: {base}", flush=True)
                row = {"batch": batch, "variational": vs, "baseline": base}
                if "error" not in vs and "error" not in base:
                    row["latency_ratio"] = base["seconds_per_image"] / vs["seconds_per_image"]
                    row["memory_ratio"] = base["above_baseline_mb"] / max(vs["above_baseline_mb"], 1e-9)
                rows.append(row)
        if "memory" in FLAGS.parts:
            rows = results["memory"] = []
            for side in (int(s) for s in FLAGS.memory_sizes):
                t0 = time.perf_counter()
                path = make_image(os.path.join(workdir, f"mem{side}.tif"), side, 1000 + side)
                written = time.perf_counter() - t0
                row = {"side": side, "file_mb": os.path.getsize(path) / 2**20, "write_s": written,
                       **predict_tool_rss(vs_path, path)}
                print(f"memory {row}", flush=True)
                rows.append(row)
        if "megapixel" in FLAGS.parts:
            # The megapixel task (1500^2): variational saccading, a CNN on the 180^2 view (read from the pyramid),
            # ResNet-18 over 49 crops of 224 of the full resolution; batch 1, fresh process per model.
            from saccade_zoo.data.cluttered import load_items
            from saccade_zoo.data.megapixel import write_megapixel_tiffs

            folder = os.path.join(workdir, "megapixel")
            if not os.path.isdir(folder):
                items, item_labels = load_items("test", "sample")
                write_megapixel_tiffs(folder, items, item_labels, 1 + FLAGS.repeats)
            files = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".tif"))
            rows = results["megapixel"] = []
            for preset, kind in (("variational_megapixel", "vs"), ("convnet_megapixel180", "baseline"),
                                 ("resnet18_crops49_megapixel", "baseline")):
                row = run_worker(kind, model_file(preset), files[:1 + FLAGS.repeats], 1, FLAGS.num_workers)
                row["preset"] = preset
                print(f"megapixel {row}", flush=True)
                rows.append(row)
        if "throughput" in FLAGS.parts:
            side = FLAGS.throughput_side
            folder = os.path.join(workdir, f"folder{side}")
            os.makedirs(folder, exist_ok=True)
            distinct = [make_image(os.path.join(workdir, f"thr{side}_{i}.tif"), side, 2000 + i) for i in range(4)]
            files = []
            for i in range(FLAGS.folder_files):
                link = os.path.join(folder, f"{i:03d}.tif")
                if not os.path.exists(link):
                    os.link(distinct[i % len(distinct)], link)
                files.append(link)
            rows = results["throughput"] = []
            for cold in (False, True):
                for workers in (int(w) for w in FLAGS.worker_counts):
                    if cold and not _drop_page_cache():
                        rows.append({"num_workers": workers, "cold": True,
                                     "error": "not run: dropping the page cache needs root"})
                        continue
                    # an untimed batch of 16 other files traces the model at batch 16; the folder is timed
                    warm = [make_image(os.path.join(workdir, f"warm{side}_{i:02d}.tif"), 2528, 3000 + i)
                            for i in range(16)]
                    if cold:
                        _drop_page_cache()
                    row = run_worker("vs", vs_path, warm + files, 16 if len(files) >= 16 else len(files), workers,
                                     first_batch=len(warm))
                    if "error" not in row:
                        row["images_per_second"] = 1.0 / row["seconds_per_image"]
                    row.update(num_workers=workers, cold=cold)
                    print(f"throughput {row}", flush=True)
                    rows.append(row)
    finally:
        if FLAGS.out_json:
            os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out_json)), exist_ok=True)
            with open(FLAGS.out_json, "w") as handle:
                json.dump(results, handle, indent=1)
        if not FLAGS.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    app.run(main)
