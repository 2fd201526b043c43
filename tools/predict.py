"""Classify image files with a zoo model: huge tiled pyramid TIFFs without loading them (variational saccaders read
a proxy level and T glimpse windows from disk), and ordinary images with any zoo model.

    python tools/predict.py --model=runs/vs2528/model.keras --inputs=slides/ --output_json=preds.json
    python tools/predict.py --model=saccader_fashion100 --inputs='photos/*.png' --pictures_dir=glimpses/

--inputs takes files, folders (their image files) and glob patterns, comma-separated. For each file it prints the
top classes with probabilities and the glimpse boxes in full-resolution pixels (y0, x0, y1, x1; 1 = first
glimpse), and writes them to --output_json (one record per file: file, error, height, width, channels, top,
probabilities, boxes, levels, timings) and --output_csv (one row per file: file, error, top class, its probability,
the top-k as "name:p" pairs, the boxes as JSON). --pictures_dir draws each file's glimpses, numbered in time order,
on an overview of the image (<= 512 px). Convert JPEG/PNG/plain TIFFs to tiled pyramid TIFFs with
tools/convert_to_tiff.py: other files are decoded whole (a warning says so).

A file that cannot be classified (missing, not an image, corrupt or truncated, over --max_pixels, smaller than the
glimpse, wrong number of channels) is reported with the reason and the others are still classified; the exit
status is then 1.
"""
import csv
import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A zoo .keras file or the name of a shipped model (saccade_zoo.list_pretrained()).",
                    required=True)
flags.DEFINE_list("inputs", None, "Image files, folders and glob patterns (comma-separated).", required=True)
flags.DEFINE_integer("top_k", 3, "Classes printed and saved per file.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Files classified together.", lower_bound=1)
flags.DEFINE_integer("num_workers", 8, "Threads reading glimpse windows concurrently (1: one read at a time).",
                     lower_bound=1)
flags.DEFINE_float("max_pixels", 1e9, "Refuse images with more pixels (decompression-bomb guard); 0: no limit.")
flags.DEFINE_string("output_json", None, "Write the predictions as JSON here.")
flags.DEFINE_string("output_csv", None, "Write the predictions as CSV here.")
flags.DEFINE_string("pictures_dir", None, "Draw each file's glimpses (numbered in time order) on its overview "
                    "image into this folder (<stem>_glimpses.png).")
flags.DEFINE_bool("quiet", False, "No per-file lines (the progress bar and the summary only).")


def format_result(result):
    """Lines printed for one :class:`~saccade_zoo.inference.FileResult`."""
    if not result.ok:
        return [f"{result.path}: ERROR {result.error}"]
    h, w = result.shape[:2]
    top = ", ".join(f"{name} {p:.3f}" for name, p in result.top)
    lines = [f"{result.path} ({h} x {w}): {top}"]
    if result.boxes is not None:
        for t, box in enumerate(result.boxes):
            level = "" if result.levels is None else f"  level {int(result.levels[t])}"
            lines.append(f"    glimpse {t + 1}: y0={box[0]:.1f} x0={box[1]:.1f} y1={box[2]:.1f} x1={box[3]:.1f}{level}")
    return lines


def write_csv(path, results):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "error", "top_class", "top_probability", "top_k", "boxes"])
        for r in results:
            if r.ok:
                boxes = "" if r.boxes is None else json.dumps(r.to_json()["boxes"])
                writer.writerow([r.path, "", r.top[0][0], f"{r.top[0][1]:.6f}",
                                 " ".join(f"{name}:{p:.6f}" for name, p in r.top), boxes])
            else:
                writer.writerow([r.path, r.error, "", "", "", ""])


def draw(result, out_dir, max_pixels, activation, class_names):
    """<out_dir>/<stem>_glimpses.png: the glimpses on the file's overview; returns the path."""
    import numpy as np

    from saccade_zoo.evaluation.visualize import plot_glimpses
    from saccade_zoo.inference import overview

    pixels, (sy, sx) = overview(result.path, max_pixels=max_pixels)
    boxes = np.zeros((1, 0, 4), np.float32) if result.boxes is None else (
        result.boxes[None] * np.array([sy, sx, sy, sx], np.float32))
    if activation == "sigmoid":
        prediction = (result.probabilities > 0.5).astype(np.int64)
    else:
        prediction = int(np.argmax(result.probabilities))
    stem = os.path.splitext(os.path.basename(result.path))[0]
    path = os.path.join(out_dir, f"{stem}_glimpses.png")
    plot_glimpses(pixels[None], boxes, path, predictions=[prediction], class_names=class_names, columns=1,
                  title=os.path.basename(result.path))
    return path


def main(argv):
    del argv
    import keras

    from saccade_zoo.inference import FilePredictor, expand_inputs, load_model

    try:
        model = load_model(FLAGS.model)
    except (ValueError, OSError) as error:
        raise app.UsageError(f"--model: {error}") from None
    try:
        paths = expand_inputs(FLAGS.inputs)
    except ValueError as error:
        raise app.UsageError(f"--inputs: {error}") from None
    max_pixels = FLAGS.max_pixels or None
    bar = keras.utils.Progbar(len(paths), unit_name="file", verbose=1 if sys.stderr.isatty() else 2,
                              stateful_metrics=["failed"])
    results, failed = [], 0
    with FilePredictor(model, top_k=FLAGS.top_k, num_workers=FLAGS.num_workers, max_pixels=max_pixels) as predictor:
        for result in predictor.predict(paths, batch_size=FLAGS.batch_size):
            results.append(result)
            failed += not result.ok
            if not FLAGS.quiet or not result.ok:
                print("\n".join(format_result(result)), flush=True)
            if FLAGS.pictures_dir and result.ok:
                os.makedirs(FLAGS.pictures_dir, exist_ok=True)
                try:
                    draw(result, FLAGS.pictures_dir, max_pixels, predictor.activation, predictor.class_names)
                except Exception as error:  # a picture never fails the prediction
                    print(f"{result.path}: no picture ({type(error).__name__}: {error})", flush=True)
            bar.add(1, [("failed", failed)])
    if FLAGS.output_json:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
        with open(FLAGS.output_json, "w") as handle:
            json.dump({"model": FLAGS.model, "results": [r.to_json() for r in results]}, handle, indent=1)
    if FLAGS.output_csv:
        write_csv(FLAGS.output_csv, results)
    print(f"{len(results) - failed} of {len(results)} files classified, {failed} failed.", flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
