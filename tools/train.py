"""Train any zoo preset that has training stages through the stages its model declares (a Saccader: the paper's
three steps; a BagNet: its representation step) on cluttered digits/clothes.

Quick start (shipped Fashion-MNIST sample, ~6-10 minutes on 2 CPU cores):

    python tools/train.py --output_dir=runs/quickstart

Full Fashion-MNIST IDX data (Debian: `apt-get install dataset-fashion-mnist`; or MNIST IDX files in a folder):

    python tools/train.py --data=idx --data_dir=/usr/share/datasets/fashion-mnist --epochs=30,10,20 \
        --output_dir=runs/fashion100

Two-item identification (multi-hot labels, a multi-label model) or the sum of two items (19 classes):

    python tools/train.py --task=identify --output_dir=runs/identify
    python tools/train.py --task=sum --output_dir=runs/sum

Huge canvases, made batch by batch and never all in memory: the variational saccading paper's 2528x2528 two-item
identification (100x100 canvases bilinearly upsampled) and the megapixel task of attention sampling (1500x1500):

    python tools/train.py --preset=variational_cluttered2528_identify --canvas_size=100 --resize_to=2528 \
        --output_dir=runs/vs2528
    python tools/train.py --preset=variational_megapixel --dataset=megapixel --output_dir=runs/megapixel
    python tools/train.py --preset=convnet_megapixel180 --dataset=megapixel --resize_to=180 --output_dir=runs/mp180

Interrupt it at any point and run the same command again: it resumes from the last checkpoint.
Writes <output_dir>/model.keras, results.json, accuracy_vs_glimpses.png, glimpses.png, tensorboard/.
A stage whose loss or weights diverge stops the run (exit 3) with the command to retry; a final model near chance
ends with a warning.
"""
import json
import math
import os
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "saccader_cluttered100", "Model preset with training stages (saccade_zoo.list_models()).")
flags.DEFINE_enum("data", "sample", ["sample", "idx"], "Item source: the shipped sample or IDX files in --data_dir.")
flags.DEFINE_string("data_dir", None, "Folder of MNIST-format IDX files (default /usr/share/datasets/fashion-mnist).")
flags.DEFINE_enum("task", None, ["single", "identify", "sum"],
                  "single: one item, its class; identify: two items, multi-hot labels (a multi-label model); "
                  "sum: two items, the sum of their classes (19 classes). Default: the preset's task (single for "
                  "presets made for any).")
flags.DEFINE_integer("train_examples", None, "Training images to generate (default: one per source item).")
flags.DEFINE_integer("test_examples", None, "Test images to generate (default: one per source test item).")
flags.DEFINE_enum("dataset", "cluttered", ["cluttered", "megapixel"], "cluttered: items and clutter pieces on a "
                  "canvas (RAM / DRAM / variational saccading); megapixel: the attention-sampling papers' 1500x1500 "
                  "canvases, 3 items of the target class + 2 others + 50 line-noise patches, label the majority "
                  "(5000 train / 1000 test by default; made on demand, never all in memory).")
flags.DEFINE_integer("canvas_size", 100, "Canvas side in pixels (megapixel: 1500 unless given).")
flags.DEFINE_integer("resize_to", None, "Resize every canvas to this side on the fly (bilinear up, area down): "
                     "--canvas_size=100 --resize_to=2528 is the variational saccading paper's 2528x2528 cluttered "
                     "MNIST (a bilinear upsample of the 100x100 canvases); --dataset=megapixel --resize_to=180 the "
                     "low-resolution CNN's view. Resized images are made batch by batch, never all in memory.")
flags.DEFINE_integer("num_distractors", 8, "Clutter pieces per image (RAM: 8 on 100x100).")
flags.DEFINE_list("steps", None, "Training stages to run, in order (default: every stage the model declares).")
flags.DEFINE_list("epochs", None, "Epochs per stage (one value for all, or one per stage; default: the stages' "
                  "quick-start epochs, 4,1,2 for a Saccader).")
flags.DEFINE_list("learning_rate", None, "Peak learning rate per stage (or one value; default: the stages' own, "
                  "0.1,0.1,0.01 for a Saccader).")
flags.DEFINE_enum("optimizer", None, ["sgd", "adam"], "SGD with Nesterov momentum 0.9 (the Saccader paper) or Adam "
                  "(the variational saccading paper). Default: each stage's own.")
flags.DEFINE_float("warmup_epochs", 0.5, "Linear warm-up before the cosine decay, in epochs.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_float("clipnorm", None, "Clip the global gradient norm. Default: each stage's own (see "
                   "`type(model).stages`); 0 turns clipping off.")
flags.DEFINE_float("weight_decay", None, "lambda of the (lambda/2) * sum(w^2) penalty (default: each stage's own, "
                   "1e-4 for the Saccader's steps, 0 for variational saccading).")
flags.DEFINE_integer("glimpses", None, "T of the glimpse model (default: the preset's; the paper: 6).")
flags.DEFINE_integer("location_glimpses", 12, "T of location pretraining (the paper: 12).")
flags.DEFINE_enum("location_objective", "mean", ["mean", "sum"],
                  "Location pretraining minimises Eq. 5 / T (mean, default: one learning rate for every T) or Eq. 5 "
                  "as written (sum: T times larger steps).")
flags.DEFINE_enum("location_targets", "max_logit", ["max_logit", "predicted_class"],
                  "Location pretraining targets: the cells of largest maximum logit over classes (max_logit, the "
                  "paper, default) or the predicted class's best cells (predicted_class, the authors' code).")
flags.DEFINE_float("beta", None, "Variational saccading: weight of the VRNN ELBO (reconstruction + KL) in Eq. 5 (1 = "
                   "the paper's plain sum; default: the stage's own, 0.001, see VariationalSaccader).")
flags.DEFINE_float("posterior_variance", None, "Variational saccading: a fixed posterior variance sigma^2 (the paper's "
                   "ablation) instead of the learned one.")
flags.DEFINE_list("window_scale", None, "Variational saccading: the glimpse window's side range as fractions of the "
                  "image side, 'min,max' (default: the preset's, 0.1,0.64 at 100x100).")
flags.DEFINE_float("proxy_noise", None, "Variational saccading: feed the model its proxy (proxy_input=True), the area-"
                   "resized image plus Gaussian noise of this standard deviation in [0, 1] pixel units (the paper's "
                   "noisy-proxy ablation; fixed per image, seeded). Default: the model makes its clean proxy in-graph.")
flags.DEFINE_float("reinforce_weight", None, "Weight of the REINFORCE term (default: the stage's own: 1 for the "
                   "Saccader's policy step, as in its paper; 0.01 for RAM/DRAM, see RecurrentAttentionModel).")
flags.DEFINE_enum("step_loss", None, ["last", "all"], "RAM/DRAM: cross entropy of the last step's logits (the "
                  "papers', default) or the mean over all steps (also trains the earlier steps' predictions).")
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


def per_stage(values, stages, name, cast, default):
    """One value per stage: the flag's values (one for all, or one per stage) or each stage's default."""
    if values is None:
        return [default(stage) for stage in stages]
    if len(values) == 1:
        values = values * len(stages)
    if len(values) != len(stages):
        raise app.UsageError(f"--{name} needs one value or one per stage ({', '.join(s.name for s in stages)}), "
                             f"got {values}.")
    return [cast(v) for v in values]


def chance_level(contract, labels):
    """Accuracy of guessing: 1 / classes for one class; for multi-label (exact match), 1 / C(classes, k) with k
    the typical number of labels of an image."""
    if not contract.multi_label:
        return 1.0 / contract.num_classes
    import numpy as np

    k = int(round(float(np.asarray(labels).sum(axis=-1).mean())))
    return 1.0 / math.comb(contract.num_classes, max(k, 1))


def chance_warning(results, contract, labels, glimpses):
    """A warning when the trained model is near chance: top-1 below max(2 x chance, chance + 5 points) with the
    trained number of glimpses (learned policy) or on the full image (a model without one)."""
    chance = chance_level(contract, labels)
    floor = max(2 * chance, chance + 0.05)
    learned = results["policies"].get("learned")
    if learned is not None:
        seen = min(glimpses, len(learned["accuracy"]))  # --eval_glimpses may stop short of the trained count
        accuracy, what = learned["accuracy"][seen - 1], f"{seen} glimpse{'s' * (seen > 1)}"
    else:
        accuracy, what = results["full_image"], "the full image"
    if accuracy < floor:
        return (f"the trained model is near chance: accuracy {accuracy:.1%} with {what} (chance {chance:.1%}). "
                "Check the training curves (tensorboard/, <stage>/history.json); a stage may need a lower learning "
                "rate or more epochs.")
    return None


def collapse_warning(results, glimpses, variational=False):
    """A warning when the learned policy's glimpses pile up on one spot: after the trained number of glimpses
    (>= 2) they cover less than 1.5 x what the first glimpse alone covers (e.g. DRAM under Adam: every glimpse in
    one image corner, coverage 1.8% after 8 glimpses of a 100x100 canvas). A model that does not look around is
    rarely what was meant; the accuracy may still be above chance (a coarse view sees the whole image). The advice
    names the knobs of the model's own training: a variational saccader has no REINFORCE term."""
    learned = results["policies"].get("learned")
    coverage = (learned or {}).get("coverage")
    if glimpses < 2 or not coverage or len(coverage) < glimpses or not coverage[0] > 0:
        return None
    if coverage[glimpses - 1] < 1.5 * coverage[0]:
        return (f"the learned policy's {glimpses} glimpses cover {coverage[glimpses - 1]:.1%} of the image, about "
                f"what its first glimpse covers ({coverage[0]:.1%}): they sit on one spot, the policy may have "
                "collapsed. See glimpses.png; " + (
                    "larger windows (--window_scale), a smaller --beta or a lower learning rate may help "
                    "(docs/results.md, 'Where it looks')." if variational else
                    "a lower learning rate or REINFORCE weight, or another optimizer, may help."))
    return None


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    import saccade_zoo
    from saccade_zoo.data.cluttered import ClutteredConfig, class_names, cluttered_split
    from saccade_zoo.data.inputs import LazyImages, ResizedImages, take_examples
    from saccade_zoo.evaluation import (evaluate_policies, format_accuracy_table, plot_accuracy_vs_glimpses,
                                        plot_glimpses)
    from saccade_zoo.models.base import GlimpseModel
    from saccade_zoo.models.variational import proxy_inputs
    from saccade_zoo.training.guard import TrainingDiverged
    from saccade_zoo.training.runner import save_atomically, train_stage

    preset = saccade_zoo.get_preset(FLAGS.preset)
    task = FLAGS.task or preset.get("task") or "single"
    if FLAGS.dataset == "megapixel":
        if FLAGS.task not in (None, "single"):
            raise app.UsageError("--dataset=megapixel has one label per image (the majority class): --task=single.")
        task = "single"
    config = ClutteredConfig(canvas_size=FLAGS.canvas_size, num_distractors=FLAGS.num_distractors, task=task,
                             num_items=1 if task == "single" else 2)
    source = "sample" if FLAGS.data == "sample" else FLAGS.data_dir
    overrides = {"class_names": class_names(config, source)}
    overrides["num_classes"] = len(overrides["class_names"])
    if task == "identify":
        overrides["activation"] = "sigmoid"
    elif preset["config"].get("activation") == "sigmoid":  # a multi-label preset trained on a one-label task
        overrides["activation"] = "softmax"
    builder = preset["builder"]
    variational = isinstance(builder, type) and issubclass(builder, saccade_zoo.models.VariationalSaccader)
    for flag in ("posterior_variance", "proxy_noise", "window_scale"):
        if getattr(FLAGS, flag) is not None and not variational:
            raise app.UsageError(f"--{flag}: preset {FLAGS.preset} is not a variational saccading model.")
    if FLAGS.posterior_variance is not None:
        overrides["posterior_variance"] = FLAGS.posterior_variance
    if FLAGS.window_scale is not None:
        try:
            low, high = (float(v) for v in FLAGS.window_scale)
        except ValueError:
            low = high = float("nan")
        if not 0 < low <= high <= 1:
            raise app.UsageError(f"--window_scale takes 'min,max' fractions with 0 < min <= max <= 1, got "
                                 f"{','.join(FLAGS.window_scale)}.")
        overrides["min_scale"], overrides["max_scale"] = low, high
    if FLAGS.proxy_noise is not None:
        if FLAGS.proxy_noise < 0:
            raise app.UsageError(f"--proxy_noise must be >= 0, got {FLAGS.proxy_noise}.")
        overrides["proxy_input"] = True
    if FLAGS.glimpses is not None:
        if "num_glimpses" not in preset["config"]:
            raise app.UsageError(f"--glimpses: preset {FLAGS.preset} takes no glimpses (a full-image model).")
        overrides["num_glimpses"] = FLAGS.glimpses
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    model = saccade_zoo.build(FLAGS.preset, **overrides)
    if not getattr(model, "stages", ()):
        raise app.UsageError(f"Preset {FLAGS.preset} has no training stages: it is evaluated, not trained "
                             "(tools/evaluate.py). Train its backbone instead, e.g. --preset=bagnet33_cluttered100.")
    try:
        stages = [model.stage(name) for name in (FLAGS.steps or model.stage_names)]
    except ValueError as error:  # e.g. --steps=reinforce: name the model's stages
        raise app.UsageError(f"--steps: {error}") from None
    epochs = per_stage(FLAGS.epochs, stages, "epochs", int, lambda s: s.epochs)
    rates = per_stage(FLAGS.learning_rate, stages, "learning_rate", float, lambda s: s.learning_rate)
    options = dict(location_glimpses=FLAGS.location_glimpses,
                   location_objective=FLAGS.location_objective, location_targets=FLAGS.location_targets,
                   num_trajectories=FLAGS.trajectories, sampling_seed=FLAGS.seed)
    if FLAGS.beta is not None:
        options["beta"] = FLAGS.beta
    for flag in ("reinforce_weight", "step_loss"):
        if getattr(FLAGS, flag) is not None:
            options[flag] = getattr(FLAGS, flag)
    if FLAGS.glimpses is not None:
        options["num_glimpses"] = FLAGS.glimpses
    if FLAGS.weight_decay is not None:
        options["weight_decay"] = FLAGS.weight_decay
    taken = set().union(*(stage.all_options() for stage in stages))
    for flag, option in (("location_glimpses", "location_glimpses"), ("location_objective", "location_objective"),
                         ("location_targets", "location_targets"), ("trajectories", "num_trajectories"),
                         ("beta", "beta"), ("reinforce_weight", "reinforce_weight"), ("step_loss", "step_loss")):
        if FLAGS[flag].present and option not in taken:  # a flag no stage reads would be silently ignored
            raise app.UsageError(f"--{flag}: no stage of preset {FLAGS.preset} ({', '.join(s.name for s in stages)}) "
                                 f"takes {option!r}.")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    started = time.time()

    if FLAGS.dataset == "megapixel":
        from saccade_zoo.data.megapixel import MegapixelConfig, megapixel_examples

        mconfig = MegapixelConfig(canvas_size=FLAGS.canvas_size if FLAGS["canvas_size"].present else 1500)
        train = megapixel_examples("train", source, FLAGS.train_examples, mconfig, FLAGS.seed, FLAGS.verbose)
        test = megapixel_examples("test", source, FLAGS.test_examples, mconfig, FLAGS.seed + 1, FLAGS.verbose)
    else:
        train = cluttered_split("train", source, FLAGS.train_examples, config, FLAGS.seed, FLAGS.verbose)
        test = cluttered_split("test", source, FLAGS.test_examples, config, FLAGS.seed + 1, FLAGS.verbose)
    if FLAGS.resize_to:
        for split in (train, test):
            factor = FLAGS.resize_to / split["images"].shape[1]
            split["images"] = ResizedImages(split["images"], FLAGS.resize_to)
            split["boxes"] = split["boxes"] * np.float32(factor)
    if model.image_shape != train["images"].shape[1:]:
        raise app.UsageError(f"Preset {FLAGS.preset} takes {model.image_shape} images, the data is "
                             f"{train['images'].shape[1:]}: pick a matching --preset, --canvas_size or --resize_to.")
    lazy = isinstance(train["images"], LazyImages)
    if lazy and FLAGS.proxy_noise:
        raise app.UsageError("--proxy_noise needs the images in memory: not with --resize_to or --dataset=megapixel.")
    # The model's inputs: the images, or {"images", "proxy"} with --proxy_noise (one noise draw per split and image)
    noise = FLAGS.proxy_noise or 0.0
    train_inputs = proxy_inputs(model, train["images"], noise, FLAGS.seed)
    test_inputs = proxy_inputs(model, test["images"], noise, FLAGS.seed + 1)
    # Validation arrays go to fit whole: at most ~2 GB of them for images made on demand.
    count = FLAGS.validation_examples
    if lazy:
        count = min(count, max(16, int(2e9 // (4 * np.prod(train["images"].shape[1:])))))
    validation = (take_examples(test_inputs, slice(0, count)), test["labels"][:count])
    for position, (stage, n_epochs, rate) in enumerate(zip(stages, epochs, rates)):
        print(f"\n=== stage {position + 1}/{len(stages)}: {stage.name} ({n_epochs} epochs, lr {rate}): "
              f"{stage.description} ===")
        stage_options = {k: v for k, v in options.items() if k in stage.all_options()}
        try:
            model = train_stage(model, stage.name, (train_inputs, train["labels"]), FLAGS.output_dir, n_epochs,
                                FLAGS.batch_size, FLAGS.optimizer or stage.optimizer, rate, FLAGS.warmup_epochs,
                                FLAGS.seed,
                                FLAGS.checkpoint_every, validation, FLAGS.verbose, stage_options,
                                clipnorm=stage.clipnorm if FLAGS.clipnorm is None else (FLAGS.clipnorm or None))
        except TrainingDiverged as error:
            retry = ",".join(str(r if i != position else round(r / 3, 6)) for i, r in enumerate(rates))
            print(f"\nERROR: {error}\nTo retry: the same command with --learning_rate={retry}", file=sys.stderr)
            return 3
    save_atomically(model, os.path.join(FLAGS.output_dir, "model.keras"))
    train_seconds = time.time() - started

    print("\nEvaluating on the test images ...")
    glimpse_model = model if isinstance(model, GlimpseModel) else None
    # A full-image classifier without cells (a ConvNet) gets its full-image accuracy only (no policies).
    # Inference batches of twice the training batch (as fit's validation): what fits in training fits here (a 64-image
    # batch of the 144-crop ResNet at 2528^2 would need ~29 GB for its first activation alone).
    results = evaluate_policies(model, test_inputs, test["labels"], FLAGS.eval_glimpses, FLAGS.eval_policies,
                                batch_size=2 * FLAGS.batch_size, item_boxes=test["boxes"], seed=FLAGS.seed)
    trained_glimpses = getattr(model, "num_glimpses", FLAGS.eval_glimpses)
    warnings = [chance_warning(results, model.contract, test["labels"], trained_glimpses),
                collapse_warning(results, trained_glimpses, variational)]
    warning = " Also: ".join(w for w in warnings if w) or None
    results.update(preset=FLAGS.preset, task=task, steps=[s.name for s in stages], epochs=epochs,
                   learning_rates=rates, seed=FLAGS.seed, data=FLAGS.data, dataset=FLAGS.dataset,
                   resize_to=FLAGS.resize_to, train_examples=len(train["images"]),
                   test_examples=len(test["images"]), train_seconds=round(train_seconds, 1),
                   proxy_noise=FLAGS.proxy_noise)
    if warning:
        results["warning"] = warning
    with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    names = list(results["policies"])
    metric = "exact-match accuracy" if model.contract.multi_label else "top-1"
    if not names:  # a full-image classifier
        print(f"\nTest {metric} on the full image ({len(test['images'])} images): {results['full_image']:.4f}")
        print(f"\nWrote {FLAGS.output_dir}/model.keras, results.json (training took {train_seconds / 60:.1f} min)")
        if warning:
            print(f"\nWARNING: {warning}", file=sys.stderr)
        return
    print(f"\nTest {metric} vs number of glimpses ({len(test['images'])} images; trained with {trained_glimpses}):")
    print(format_accuracy_table(results))
    plot_accuracy_vs_glimpses({n: results["policies"][n]["accuracy"] for n in names},
                              os.path.join(FLAGS.output_dir, "accuracy_vs_glimpses.png"), trained_glimpses,
                              results["full_image"], title=f"{FLAGS.preset}, {FLAGS.data} test set ({task})")
    if glimpse_model is not None:
        shown = take_examples(test["images"], slice(0, 8))
        out = glimpse_model.predict(take_examples(test_inputs, slice(0, 8)), verbose=0)
        plot_glimpses(shown, np.asarray(out["boxes"]), os.path.join(FLAGS.output_dir, "glimpses.png"),
                      labels=test["labels"][:8], predictions=model.contract.predictions(out["logits"]),
                      class_names=model.class_names, title=f"{type(model).__name__} glimpses (1 = first)")
    print(f"\nWrote {FLAGS.output_dir}/model.keras, results.json, accuracy_vs_glimpses.png"
          f"{', glimpses.png' if glimpse_model is not None else ''} (training took {train_seconds / 60:.1f} min)")
    if warning:
        print(f"\nWARNING: {warning}", file=sys.stderr)


if __name__ == "__main__":
    import _malloc  # tools/_malloc.py: restart under tcmalloc where installed (1.6-1.8x faster training on CPU)
    _malloc.reexec_with_tcmalloc()
    sys.exit(app.run(main))
