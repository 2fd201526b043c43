"""Export a zoo model to .keras + SavedModel + TFLite (float32, float16, dynamic int8, full int8) + manifest.json.

    python tools/export.py --model saccader_cluttered100 --weights path.weights.h5
    python tools/export.py --model path/to/model.keras --out_dir exports/mine

A .keras file of the zoo carries its preset (preprocessing and class names); --preset overrides the preprocessing
of a file that has none.

Parity with Keras is checked on real images (cluttered Fashion-MNIST from the shipped sample); a failed check,
an unknown model, an existing output folder (without --overwrite) or an op that is not a TFLite built-in exits
non-zero with a message naming the problem.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A preset name (see saccade_zoo.list_models()) or a path to a .keras file.")
flags.DEFINE_string("weights", None, "Weights for a preset: a .weights.h5 file or a .keras file to take them from.")
flags.DEFINE_string("preset", None, "Preset whose preprocessing (mean/std) applies (default: the model's own, saved "
                    "with it).")
flags.DEFINE_string("out_dir", None, "Output folder (default exports/<name>).")
flags.DEFINE_string("name", None, "Export name (default: the preset name or the .keras file's stem).")
flags.DEFINE_bool("overwrite", False, "Replace an existing output folder.")
flags.DEFINE_list("variants", ["float32", "float16", "dynamic", "int8"], "TFLite variants to write.")
flags.DEFINE_integer("num_images", 1000, "Real held-out images (test split) for the parity checks; labelled (the "
                     "quantised variants' accuracy gate) when the model's classes are the cluttered Fashion-MNIST "
                     "tasks', which needs >= 1000.")
flags.DEFINE_integer("num_calibration_images", 128, "Real images (train split) to calibrate full int8 on.")
flags.DEFINE_integer("seed", 0, "Seed of the real images.")
flags.DEFINE_string("class_names", None, "Text file with one class name per line.")
flags.DEFINE_bool("compile_state", True, "Keep the compile state (optimizer and its moments) in model.keras; "
                  "--nocompile_state writes weights and architecture only (a smaller file: compile before fit).")
flags.DEFINE_bool("check", True, "Fail when a parity check fails (--nocheck only records the numbers).")


def fail(message):
    print(f"export failed: {message}", file=sys.stderr)
    return 2


def load_model(spec, weights, preset):
    import keras

    import saccade_zoo

    if spec.endswith(".keras") or os.path.sep in spec or os.path.exists(spec):
        if not os.path.isfile(spec):
            raise ValueError(f"--model {spec!r} is neither a preset nor an existing .keras file.")
        if not spec.endswith(".keras"):
            raise ValueError(f"--model {spec!r} is not a .keras model file.")
        try:
            model = keras.models.load_model(spec, safe_mode=True)
        except Exception as error:
            raise ValueError(f"--model {spec!r} could not be loaded as a Keras model: {error}") from error
        if not isinstance(model, saccade_zoo.models.ZooModel):
            raise ValueError(f"--model {spec!r} is a {type(model).__name__}, not a saccade_zoo model.")
        if preset:
            saccade_zoo.get_preset(preset)  # unknown preset -> ValueError with close matches
        stem = os.path.basename(spec)[: -len(".keras")]
        if stem == "model":  # runs/quickstart/model.keras -> "quickstart" (tools/train.py names every file model)
            stem = os.path.basename(os.path.dirname(os.path.abspath(spec))) or stem
        return model, stem
    model = saccade_zoo.build(spec)  # unknown preset -> ValueError with close matches
    if weights:
        if not os.path.isfile(weights):
            raise ValueError(f"--weights {weights!r} does not exist.")
        if weights.endswith(".keras"):
            source = keras.models.load_model(weights, safe_mode=True)
            model.set_weights(source.get_weights())
        elif weights.endswith(".weights.h5"):
            model.load_weights(weights)
        else:
            raise ValueError(f"--weights {weights!r} must be a .weights.h5 or .keras file.")
    return model, spec


def main(argv):
    del argv
    if not FLAGS.model:
        return fail("--model is required (a preset name or a .keras file).")
    from saccade_zoo.export import (MIN_LABELLED_IMAGES, ParityError, UnsupportedOpsError, export_model,
                                    labelled_task, real_images)
    from saccade_zoo.export.parity import QUANTISED_VARIANTS
    from saccade_zoo.export.images import describe

    try:
        model, default_name = load_model(FLAGS.model, FLAGS.weights, FLAGS.preset)
        name = FLAGS.name or default_name
        out_dir = FLAGS.out_dir or os.path.join("exports", name)
        if os.path.exists(out_dir) and not FLAGS.overwrite:
            return fail(f"output folder {out_dir} already exists; pass --overwrite to replace it.")
        class_names = None
        if FLAGS.class_names:
            with open(FLAGS.class_names) as handle:
                class_names = [line.strip() for line in handle if line.strip()]
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        task = labelled_task(model)
        if task is None:
            print(f"note: no labelled images match {model.name}'s classes; dynamic and int8 are gated on top-1 "
                  "agreement with Keras instead of accuracy")
        elif FLAGS.num_images < MIN_LABELLED_IMAGES and set(QUANTISED_VARIANTS) & set(FLAGS.variants):
            raise ValueError(f"--num_images={FLAGS.num_images}: the quantised variants' accuracy gate needs >= "
                             f"{MIN_LABELLED_IMAGES} labelled images.")
        calibration, _ = real_images(shape, FLAGS.num_calibration_images, split="train", seed=FLAGS.seed,
                                     task=task or "single")
        images, labels = real_images(shape, FLAGS.num_images, split="test", seed=FLAGS.seed, task=task or "single")
        manifest = export_model(model, out_dir, calibration, parity_images=images, class_names=class_names,
                                parity_labels=None if task is None else labels,
                                preprocessing=FLAGS.preset, overwrite=FLAGS.overwrite, variants=FLAGS.variants,
                                check_parity=FLAGS.check, calibration_steps=FLAGS.num_calibration_images,
                                images_description=describe(shape, FLAGS.num_images, split="test", seed=FLAGS.seed,
                                                            task=task or "single"),
                                calibration_description=describe(shape, FLAGS.num_calibration_images, split="train",
                                                                 seed=FLAGS.seed, task=task or "single"),
                                log=print, compile_state=FLAGS.compile_state)
    except (ValueError, FileExistsError, ParityError, UnsupportedOpsError, TypeError) as error:
        return fail(str(error))
    for variant, result in manifest["parity"]["results"].items():
        accuracy = f" accuracy={result['accuracy']:.4f}" if "accuracy" in result else ""
        print(f"{variant:16s} max|dlogits|={result['max_abs_logits']:.3g} "
              f"(relative {result['relative_max_abs_logits']:.3g}) top1 agreement={result['top1_agreement']:.3f} "
              f"trajectories={result.get('location_agreement', float('nan')):.3f}{accuracy} "
              f"passed={result['passed']}")
    if manifest["parity"]["labelled"]:
        keras_accuracy = manifest["parity"]["results"]["savedmodel"]["keras_accuracy"]
        print(f"Keras accuracy on the {manifest['parity']['num_images']} labelled parity images: {keras_accuracy:.4f}")
    print(f"wrote {out_dir}")
    return 0


if __name__ == "__main__":
    flags.mark_flag_as_required("model")
    app.run(main)
