"""Per-image latency (batch 1) of Keras, SavedModel and each TFLite variant, as ratios to Keras, and file sizes.

    python tools/benchmark_export.py --model saccader_cluttered100 --runs 50
    python tools/benchmark_export.py --model runs/fashion100/model.keras

Exports the model (a preset, freshly initialised, or a trained .keras file) to a temporary folder, full int8
calibrated on train-split images, parity recorded (not enforced) on held-out test-split images; then times each
artifact on those images in the same process. Prints a Markdown table.
"""
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "saccader_cluttered100", "Preset name, or a .keras file.")
flags.DEFINE_string("preset", None, "Preset whose preprocessing applies (default: the model's own).")
flags.DEFINE_integer("runs", 30, "Timed runs per artifact (after 3 warm-up runs).")
flags.DEFINE_integer("num_images", 32, "Real held-out images for parity and timing.")
flags.DEFINE_integer("num_calibration_images", 64, "Real train-split images to calibrate full int8 on.")
flags.DEFINE_integer("threads", 2, "LiteRT interpreter threads.")
flags.DEFINE_list("variants", ["float32", "float16", "dynamic", "int8"], "TFLite variants.")


def _time(fn, images, runs):
    for i in range(3):
        fn(images[i % len(images)][None])
    times = []
    for i in range(runs):
        x = images[i % len(images)][None]
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    import saccade_zoo
    from saccade_zoo.export import TFLiteRunner, export_model, real_images

    if FLAGS.model.endswith(".keras"):
        import keras

        model = keras.models.load_model(FLAGS.model)
    else:
        model = saccade_zoo.build(FLAGS.model)
    preset = FLAGS.preset or model  # a zoo model carries its preset's preprocessing
    calibration, _ = real_images(model.image_shape, FLAGS.num_calibration_images, split="train")
    images, _ = real_images(model.image_shape, FLAGS.num_images)
    out = os.path.join(tempfile.mkdtemp(), "model")
    start = time.perf_counter()
    manifest = export_model(model, out, calibration, parity_images=images, preprocessing=FLAGS.preset,
                            variants=FLAGS.variants, check_parity=False, calibration_steps=len(calibration))
    export_s = time.perf_counter() - start
    pre = saccade_zoo.preprocess(images, preset)
    rows = [("keras", _time(lambda x: model.predict_on_batch(x), pre, FLAGS.runs), None)]
    serve = tf.saved_model.load(os.path.join(out, "saved_model")).signatures["serving_default"]
    rows.append(("savedmodel", _time(lambda x: serve(images=tf.constant(x)), images, FLAGS.runs), None))
    for variant in FLAGS.variants:
        path = os.path.join(out, f"model_{variant}.tflite")
        runner = TFLiteRunner(model_path=path, num_threads=FLAGS.threads)
        rows.append((f"tflite_{variant}", _time(runner, images, FLAGS.runs), os.path.getsize(path)))
    keras_s = rows[0][1]
    float32 = os.path.getsize(os.path.join(out, "model_float32.tflite")) if "float32" in FLAGS.variants else None
    print(f"\n{FLAGS.model}: {int(model.count_params()):,} parameters, export took {export_s:.0f} s")
    print("| artifact | ms / image (batch 1) | ratio to Keras | file MB | size vs float32 | top-1 agree | loc agree |")
    print("|---|---|---|---|---|---|---|")
    results = manifest["parity"]["results"]
    for name, seconds, size in rows:
        r = results.get(name, {})
        mb = f"{size / 1e6:.2f}" if size else "-"
        rel = f"{size / float32:.2f}" if size and float32 else "-"
        agree = f"{r['top1_agreement']:.2f}" if r else "-"
        loc = f"{r['location_agreement']:.2f}" if r and "location_agreement" in r else "-"
        print(f"| {name} | {seconds * 1e3:.2f} | {seconds / keras_s:.2f} | {mb} | {rel} | {agree} | {loc} |")
    print(f"\nkeras.keras file: {os.path.getsize(os.path.join(out, 'model.keras')) / 1e6:.2f} MB; images: "
          f"{np.asarray(images).shape}")


if __name__ == "__main__":
    app.run(main)
