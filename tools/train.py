"""Train a Saccader through the paper's three steps (or any of them) on cluttered digits/clothes.

Quick start (shipped Fashion-MNIST sample, ~6-8 minutes on 2 CPU cores):

    python tools/train.py --output_dir=runs/quickstart

Full Fashion-MNIST IDX data (Debian: `apt-get install dataset-fashion-mnist`; or MNIST IDX files in a folder):

    python tools/train.py --data=idx --data_dir=/usr/share/datasets/fashion-mnist --epochs=30,10,20 \
        --output_dir=runs/fashion100

Interrupt it at any point and run the same command again: it resumes from the last checkpoint.
Writes <output_dir>/model.keras, results.json, accuracy_vs_glimpses.png, glimpses.png, tensorboard/.
"""
import json
import os
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "saccader_cluttered100", "Model preset (saccade_zoo.list_models()).")
flags.DEFINE_enum("data", "sample", ["sample", "idx"], "Item source: the shipped sample or IDX files in --data_dir.")
flags.DEFINE_string("data_dir", None, "Folder of MNIST-format IDX files (default /usr/share/datasets/fashion-mnist).")
flags.DEFINE_integer("train_examples", None, "Training images to generate (default: one per source item).")
flags.DEFINE_integer("test_examples", None, "Test images to generate (default: one per source test item).")
flags.DEFINE_integer("canvas_size", 100, "Canvas side in pixels.")
flags.DEFINE_integer("num_distractors", 8, "Clutter pieces per image (RAM: 8 on 100x100).")
flags.DEFINE_list("steps", ["representation", "location", "policy"], "Training steps to run, in order.")
flags.DEFINE_list("epochs", ["4", "1", "2"], "Epochs per step (one value for all, or one per step).")
flags.DEFINE_list("learning_rate", ["0.1", "0.1", "0.01"], "Peak learning rate per step (or one value).")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "SGD with Nesterov momentum 0.9 (paper) or Adam.")
flags.DEFINE_float("warmup_epochs", 0.5, "Linear warm-up before the cosine decay, in epochs.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_float("clipnorm", None, "Clip the global gradient norm (off by default, as in the paper).")
flags.DEFINE_float("weight_decay", 1e-4, "lambda of the (lambda/2) * sum(w^2) penalty.")
flags.DEFINE_integer("glimpses", 6, "T of the policy-gradient step (the paper: 6).")
flags.DEFINE_integer("location_glimpses", 12, "T of location pretraining (the paper: 12).")
flags.DEFINE_enum("location_objective", "mean", ["mean", "sum"],
                  "Location pretraining minimises Eq. 5 / T (mean, default: one learning rate for every T) or Eq. 5 "
                  "as written (sum: T times larger steps).")
flags.DEFINE_integer("trajectories", 2, "Sampled trajectories per image in the policy step (the paper: 2).")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights, the data and the sampling.")
flags.DEFINE_string("output_dir", "runs/quickstart", "Where checkpoints, logs, the model and pictures go.")
flags.DEFINE_integer("checkpoint_every", 50, "Save a checkpoint every this many steps (and at each epoch end).")
flags.DEFINE_integer("validation_examples", 1000, "Test images evaluated after each epoch (monitoring only; the "
                     "final evaluation uses all test images).")
flags.DEFINE_integer("eval_glimpses", 12, "Evaluate accuracy for 1..eval_glimpses glimpses.")
flags.DEFINE_list("eval_policies", ["ordered_logits", "random", "sobel_mean", "sobel_var", "center"],
                  "Engineered policies to compare on the same backbone.")
flags.DEFINE_bool("deterministic", True, "Deterministic TF ops (a resumed run then matches an uninterrupted one).")
flags.DEFINE_integer("verbose", 1, "Keras progress bars: 0 silent, 1 bar, 2 one line per epoch.")


def per_step(values, steps, name, cast):
    if len(values) == 1:
        values = values * len(steps)
    if len(values) != len(steps):
        raise app.UsageError(f"--{name} needs one value or one per step ({len(steps)}), got {values}.")
    return [cast(v) for v in values]


def chance_warning(results, num_classes, glimpses):
    """A warning when the trained model is near chance: top-1 below max(2 x chance, chance + 5 points) with the
    trained number of glimpses (learned policy) or on the full image (a model without one)."""
    chance = 1.0 / num_classes
    floor = max(2 * chance, chance + 0.05)
    learned = results["policies"].get("learned")
    if learned is not None:
        accuracy, what = learned["accuracy"][min(glimpses, len(learned["accuracy"])) - 1], f"{glimpses} glimpses"
    else:
        accuracy, what = results["full_image"], "the full image"
    if accuracy < floor:
        return (f"the trained model is near chance: top-1 {accuracy:.1%} with {what} (chance {chance:.1%}, "
                f"{num_classes} classes). Check the training curves (tensorboard/, <step>/history.json); a stage "
                "may need a lower learning rate or more epochs.")
    return None


def make_data(split, num_examples, seed):
    from saccade_zoo.data import ClutteredConfig, generate_cluttered
    from saccade_zoo.data.cluttered import load_items

    items, labels = load_items(split, "sample" if FLAGS.data == "sample" else FLAGS.data_dir)
    config = ClutteredConfig(canvas_size=FLAGS.canvas_size, num_distractors=FLAGS.num_distractors)
    print(f"Generating {num_examples or len(items)} cluttered {split} images from {len(items)} items ...")
    return generate_cluttered(items, labels, num_examples or len(items), config, seed=seed, verbose=FLAGS.verbose)


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    import saccade_zoo
    from saccade_zoo.data.sample import FASHION_MNIST_CLASSES
    from saccade_zoo.evaluation import (evaluate_policies, format_accuracy_table, plot_accuracy_vs_glimpses,
                                        plot_glimpses)
    from saccade_zoo.training.guard import TrainingDiverged
    from saccade_zoo.training.runner import save_atomically, train_stage
    from saccade_zoo.training.staged import STAGES

    for stage in FLAGS.steps:
        if stage not in STAGES:
            raise app.UsageError(f"Unknown step {stage!r}; choose from {', '.join(STAGES)}.")
    epochs = per_step(FLAGS.epochs, FLAGS.steps, "epochs", int)
    rates = per_step(FLAGS.learning_rate, FLAGS.steps, "learning_rate", float)
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    started = time.time()

    train = make_data("train", FLAGS.train_examples, FLAGS.seed)
    test = make_data("test", FLAGS.test_examples, FLAGS.seed + 1)
    model = saccade_zoo.build(FLAGS.preset, num_glimpses=FLAGS.glimpses)
    if model.image_shape != train["images"].shape[1:]:
        raise app.UsageError(f"Preset {FLAGS.preset} takes {model.image_shape} images, the data is "
                             f"{train['images'].shape[1:]}: pick a matching --preset or --canvas_size.")
    options = dict(weight_decay=FLAGS.weight_decay, location_glimpses=FLAGS.location_glimpses,
                   num_glimpses=FLAGS.glimpses, num_trajectories=FLAGS.trajectories, sampling_seed=FLAGS.seed,
                   location_objective=FLAGS.location_objective)
    validation = (test["images"][:FLAGS.validation_examples], test["labels"][:FLAGS.validation_examples])
    for stage, n_epochs, rate in zip(FLAGS.steps, epochs, rates):
        print(f"\n=== step {STAGES.index(stage) + 1}: {stage} ({n_epochs} epochs, lr {rate}) ===")
        try:
            model = train_stage(model, stage, (train["images"], train["labels"]), FLAGS.output_dir, n_epochs,
                                FLAGS.batch_size, FLAGS.optimizer, rate, FLAGS.warmup_epochs, FLAGS.seed,
                                FLAGS.checkpoint_every, validation, FLAGS.verbose, options, clipnorm=FLAGS.clipnorm)
        except TrainingDiverged as error:
            position = FLAGS.steps.index(stage)
            print(f"\nERROR: {error}\nTo retry: the same command with --learning_rate="
                  f"{','.join(str(r if i != position else round(r / 3, 6)) for i, r in enumerate(rates))}",
                  file=sys.stderr)
            return 3
    save_atomically(model, os.path.join(FLAGS.output_dir, "model.keras"))
    train_seconds = time.time() - started

    print("\nEvaluating on the test images ...")
    results = evaluate_policies(model, test["images"], test["labels"], FLAGS.eval_glimpses, FLAGS.eval_policies,
                                item_boxes=test["boxes"], seed=FLAGS.seed)
    results.update(preset=FLAGS.preset, steps=FLAGS.steps, epochs=epochs, seed=FLAGS.seed, data=FLAGS.data,
                   train_examples=len(train["images"]), test_examples=len(test["images"]),
                   train_seconds=round(train_seconds, 1))
    names = list(results["policies"])
    warning = chance_warning(results, model.num_classes, FLAGS.glimpses)
    if warning:
        results["warning"] = warning
    with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nTest top-1 vs number of glimpses ({len(test['images'])} images; trained with {FLAGS.glimpses}):")
    print(format_accuracy_table(results))
    plot_accuracy_vs_glimpses({n: results["policies"][n]["accuracy"] for n in names},
                              os.path.join(FLAGS.output_dir, "accuracy_vs_glimpses.png"), FLAGS.glimpses,
                              results["full_image"], title=f"{FLAGS.preset}, {FLAGS.data} test set")
    shown = test["images"][:8]
    out = model.predict(shown, verbose=0)
    class_names = FASHION_MNIST_CLASSES if FLAGS.data == "sample" or "fashion" in str(FLAGS.data_dir) else None
    plot_glimpses(shown, np.asarray(out["boxes"]), os.path.join(FLAGS.output_dir, "glimpses.png"),
                  labels=test["labels"][:8], predictions=np.asarray(out["logits"]).argmax(-1),
                  class_names=class_names, title="Saccader glimpses (1 = first)")
    print(f"\nWrote {FLAGS.output_dir}/model.keras, results.json, accuracy_vs_glimpses.png, glimpses.png "
          f"(training took {train_seconds / 60:.1f} min)")
    if warning:
        print(f"\nWARNING: {warning}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(app.run(main))
