"""Evaluate a saved zoo model: top-1 (and top-5) accuracy (for a multi-label model: exact-match and per-label
accuracy) and image coverage vs number of glimpses for its learned policy and the engineered policies on the same
backbone (and, with --policy_backbone, on a second BagNet such as the step-1 network, side by side), glimpse hit
rate on the items, the backbones' full-image accuracy, occlusion accuracy (paper Fig. 5b: glimpse boxes set to
black, then classified by a full-image classifier) and, for a glimpse model, pictures of its glimpses on test images
it gets right and wrong. A variational saccader trained with a noisy proxy (tools/train.py --proxy_noise) takes the
proxy as an input: --proxy_noise sets the noise of the test proxies (the paper's noisy-proxy ablation).

    python tools/evaluate.py --model=runs/quickstart/model.keras --output_dir=runs/quickstart/eval
    python tools/evaluate.py --model=runs/fashion/model.keras --data=idx --occlusion_model=runs/fashion/bagnet.keras \
        --policy_backbone=runs/fashion/representation/final.keras

Images: the test canvases are [0, 1] pixels; each network gets them standardised with its own preprocessing
(the mean/std saved in its metadata; none saved: the pixels as they are). Occlusion is done in pixel space:
the boxes of the first --occlusion_glimpses glimpses (the same runs as the tables: no second pass) are set to 0
(black) in the [0, 1] pixels, which are then standardised with the *judge's* preprocessing, so an occluded pixel
is (0 - mean) / std in the judge's input. The judge must be a full-image classifier (contract num_glimpses None:
a BagNet, a ConvNet, ...): a glimpse model is refused.

Outputs in --output_dir:

* results.json: ``policies`` {column: {"policy", "backbone", "accuracy" [T], "top5" [T], "coverage" [T],
  "hit_rate" [T], and for a multi-label model "label_accuracy" [T]: per-label accuracy}} (column: the policy's
  name; with --policy_backbone "<policy> (final backbone)" and "<policy> (<--policy_backbone_label>)", "learned"
  keeps its name), ``full_image`` / ``full_image_top5`` (the model's backbone; ``full_image_label_accuracy`` too
  for a multi-label model), ``policy_backbone`` {"path", "label", "full_image", "full_image_top5"}, ``top_k``
  {"k": 5, "reported", "reason"} (top-5 is reported for single-label models with more than 5 classes only: for
  multi-label models it is not defined), ``occlusion`` {"judge", "glimpses", "occluded_value" (a black pixel in
  the judge's input, per channel), "unoccluded", column: accuracy, ...}, and the run's settings.
* results.csv: one row per (policy, backbone, glimpses): ``policy,backbone,glimpses,top1,top5,coverage,hit_rate``
  (top1: exact match of every label for a multi-label model; top5 / hit_rate empty where not reported); a
  multi-label model's has one more column, ``label_accuracy`` (the fraction of (image, class) decisions right).
* occlusion.csv (with --occlusion_model): ``policy,backbone,occluded_glimpses,judge,accuracy``, one row per policy
  and backbone, first the unoccluded images (policy "none", 0 glimpses).
* accuracy_vs_glimpses.png, coverage_vs_glimpses.png.
* glimpses_right.png, glimpses_wrong.png (glimpse models): the first --glimpse_pictures test images whose
  prediction with the model's own (trained) number of glimpses is right / wrong (exact match for a multi-label
  model), each with its glimpse boxes numbered in time order (1 = first) and the true and predicted labels
  (class names; for a multi-label model the positive classes joined with "+") in its title. A file is skipped,
  with a printed reason, when there is no such image.
"""
import csv
import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A .keras file of a zoo model: a glimpse model (its own policy, and for BagNet-based "
                    "ones the engineered policies on its BagNet) or a BagNet (read at the engineered policies' cells).",
                    required=True)
flags.DEFINE_enum("data", "sample", ["sample", "idx"], "Test items: the shipped sample or IDX files in --data_dir.")
flags.DEFINE_string("data_dir", None, "Folder of MNIST-format IDX files (default /usr/share/datasets/fashion-mnist).")
flags.DEFINE_integer("test_examples", None, "Test images to generate (default: one per source test item).")
flags.DEFINE_integer("canvas_size", 100, "Canvas side in pixels.")
flags.DEFINE_integer("num_distractors", 8, "Clutter pieces per image.")
flags.DEFINE_enum("task", None, ["single", "identify", "sum"], "Targets of the test images (default: what the model "
                  "was built for: identify for a multi-label model, sum for 19 classes, else single).")
flags.DEFINE_integer("seed", 1, "Seed of the test images (tools/train.py uses its --seed + 1).")
flags.DEFINE_integer("glimpses", 12, "Evaluate 1..glimpses glimpses.")
flags.DEFINE_list("policies", ["ordered_logits", "random", "sobel_mean", "sobel_var", "center"], "Engineered policies.")
flags.DEFINE_string("policy_backbone", None, "Optional .keras of a BagNet (or of a BagNet-based glimpse model, e.g. "
                    "a Saccader saved after step 1, runs/x/representation/final.keras: its BagNet is used) on which "
                    "the engineered policies are also run, shown beside those on --model's own (final) backbone.")
flags.DEFINE_string("policy_backbone_label", "step-1 BagNet", "Name of --policy_backbone in column names.")
flags.DEFINE_string("occlusion_model", None, "Optional .keras full-image classifier (a zoo model without glimpses, "
                    "e.g. a separately trained BagNet or ConvNet) that classifies images whose glimpses are occluded "
                    "(black); a glimpse model is refused.")
flags.DEFINE_integer("occlusion_glimpses", 6, "Glimpses occluded for the occlusion test.")
flags.DEFINE_string("output_dir", None, "Where results.json, results.csv, occlusion.csv and the plots go (default: "
                    "beside --model).")
flags.DEFINE_integer("batch_size", 64, "Inference batch size.")
flags.DEFINE_float("proxy_noise", 0.0, "A variational saccader that takes its proxy (proxy_input=True, trained with "
                   "tools/train.py --proxy_noise) gets the area-resized test image plus Gaussian noise of this "
                   "standard deviation in the model's input units ([0, 1] pixels for the cluttered presets; seeded by "
                   "--seed). Other models make their own proxy: must be 0.")
flags.DEFINE_integer("glimpse_pictures", 8, "Test images in glimpses_right.png and in glimpses_wrong.png (glimpse "
                     "models; 0: no pictures).", lower_bound=0)

TOP_K = 5
FINAL = "final backbone"
CSV_COLUMNS = ("policy", "backbone", "glimpses", "top1", f"top{TOP_K}", "coverage", "hit_rate")
LABEL_ACCURACY = "label_accuracy"  # the extra column (and results.json key) of a multi-label model
OCCLUSION_COLUMNS = ("policy", "backbone", "occluded_glimpses", "judge", "accuracy")


def load_zoo_model(path, flag):
    """The saccade_zoo model saved at ``path``, or a usage error naming ``flag``."""
    import keras

    import saccade_zoo  # noqa: F401  (registers the classes)
    from saccade_zoo.models.base import ZooModel

    if not os.path.isfile(path):
        raise app.UsageError(f"--{flag} {path!r} is not a file.")
    model = keras.models.load_model(path)
    if not isinstance(model, ZooModel):
        raise app.UsageError(f"--{flag} {path} is a {type(model).__name__}, not a saccade_zoo model.")
    return model


def check_matches(other, flag, model, image_shape):
    """A second network (judge, policy backbone) must read the same images and labels as --model."""
    if tuple(other.image_shape) != tuple(image_shape):
        raise app.UsageError(f"--{flag} takes {other.image_shape} images, the test images are {tuple(image_shape)}.")
    theirs, ours = other.contract, model.contract
    if (theirs.num_classes, theirs.activation) != (ours.num_classes, ours.activation):
        raise app.UsageError(f"--{flag} has {theirs.num_classes} {theirs.activation} classes, --model "
                             f"{ours.num_classes} {ours.activation}: they must classify the same labels.")


def load_judge(model, image_shape):
    """--occlusion_model: a full-image classifier (contract without glimpses) matching --model's classes."""
    judge = load_zoo_model(FLAGS.occlusion_model, "occlusion_model")
    if judge.contract.has_glimpses:
        raise app.UsageError(
            f"--occlusion_model {FLAGS.occlusion_model} is a glimpse model ({type(judge).__name__}, "
            f"{judge.contract.num_glimpses} glimpses): the judge must be a separately trained full-image classifier "
            "(a zoo model without glimpses, e.g. a BagNet or a ConvNet). To judge with a glimpse model's BagNet, save "
            "it on its own first: python -c \"import keras, saccade_zoo; "
            f"keras.models.load_model('{FLAGS.occlusion_model}').backbone.save('bagnet.keras')\"")
    check_matches(judge, "occlusion_model", model, image_shape)
    return judge


def load_policy_backbone(model, image_shape):
    """--policy_backbone: (BagNet, its preprocessing); a BagNet-based glimpse model gives its BagNet (which is
    standardised as the glimpse model is, when the BagNet carries no preprocessing of its own)."""
    import saccade_zoo
    from saccade_zoo.models.saccader.saccader import BagNetGlimpseModel

    loaded = load_zoo_model(FLAGS.policy_backbone, "policy_backbone")
    if isinstance(loaded, saccade_zoo.BagNet):
        backbone = loaded
    elif isinstance(loaded, BagNetGlimpseModel):
        backbone = loaded.backbone
    else:
        raise app.UsageError(f"--policy_backbone {FLAGS.policy_backbone} is a {type(loaded).__name__}: the engineered "
                             "policies need a BagNet (or a BagNet-based model such as a Saccader).")
    check_matches(backbone, "policy_backbone", model, image_shape)
    return backbone, backbone.preprocessing or loaded.preprocessing


def csv_columns(contract):
    """results.csv's header: a multi-label model's has a per-label accuracy column."""
    return CSV_COLUMNS + ((LABEL_ACCURACY,) if contract.multi_label else ())


def csv_rows(results, columns=CSV_COLUMNS):
    """results.csv rows: one per (policy, backbone, glimpses)."""
    for entry in results["policies"].values():
        for t, top1 in enumerate(entry["accuracy"]):
            row = {"policy": entry["policy"], "backbone": entry["backbone"], "glimpses": t + 1, "top1": top1,
                   "coverage": entry["coverage"][t]}
            for key in (f"top{TOP_K}", "hit_rate", LABEL_ACCURACY):
                if key in columns:
                    row[key] = entry[key][t] if key in entry else ""
            yield row


def occlusion_rows(results, columns):
    """occlusion.csv rows: the unoccluded images, then one per occluded policy and backbone."""
    occlusion = results["occlusion"]
    yield {"policy": "none", "backbone": "", "occluded_glimpses": 0, "judge": occlusion["judge"],
           "accuracy": occlusion["unoccluded"]}
    for column in columns:
        entry = results["policies"][column]
        yield {"policy": entry["policy"], "backbone": entry["backbone"], "occluded_glimpses": occlusion["glimpses"],
               "judge": occlusion["judge"], "accuracy": occlusion[column]}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def picture_class_names(model, config, source):
    """Class names for the pictures' titles: the model's own (saved with it by tools/train.py), else the test
    data's when they are as many as the model's classes, else "class_<i>"."""
    from saccade_zoo.data.cluttered import class_names

    if model.metadata.get("class_names"):
        return model.class_names
    names = class_names(config, source)
    return names if len(names) == model.contract.num_classes else model.class_names


def glimpse_pictures(model, inputs, pixels, targets, names, out_dir, count):
    """glimpses_right.png and glimpses_wrong.png (see the module docstring) for the model-ready ``inputs`` of the
    [0, 1] ``pixels``; returns the files written."""
    from saccade_zoo.evaluation import plot_glimpses, right_and_wrong

    contract = model.contract
    found = right_and_wrong(model, inputs, targets, count=count, batch_size=FLAGS.batch_size)
    verdict = "exact match of every label" if contract.multi_label else "top-1"
    written = []
    for kind in ("right", "wrong"):
        shown = found[kind]
        if not len(shown["index"]):
            print(f"\nno glimpses_{kind}.png: no test image is classified {kind} ({verdict}, "
                  f"{contract.num_glimpses} glimpses, {len(pixels)} images)")
            continue
        path = os.path.join(out_dir, f"glimpses_{kind}.png")
        plot_glimpses(pixels[shown["index"]], shown["boxes"], path, labels=shown["labels"],
                      predictions=shown["predictions"], class_names=names,
                      title=f"{type(model).__name__}, {kind} ({verdict}, {contract.num_glimpses} glimpses): boxes "
                            "numbered in time order, 1 = first")
        written.append(os.path.basename(path))
    return written


def main(argv):
    del argv
    import numpy as np

    import saccade_zoo
    from saccade_zoo.data.cluttered import ClutteredConfig, cluttered_split
    from saccade_zoo.evaluation import (black_value, evaluate_policies, format_accuracy_table, occlusion_accuracy,
                                        plot_accuracy_vs_glimpses, standardise)
    from saccade_zoo.models.variational import proxy_inputs

    model = load_zoo_model(FLAGS.model, "model")
    contract = model.contract
    task = FLAGS.task or ("identify" if contract.multi_label else "sum" if contract.num_classes == 19 else "single")
    out_dir = FLAGS.output_dir or os.path.join(os.path.dirname(os.path.abspath(FLAGS.model)), "eval")
    config = ClutteredConfig(canvas_size=FLAGS.canvas_size, num_distractors=FLAGS.num_distractors, task=task,
                             num_items=1 if task == "single" else 2)
    test = cluttered_split("test", "sample" if FLAGS.data == "sample" else FLAGS.data_dir, FLAGS.test_examples,
                           config, FLAGS.seed)
    pixels, targets = test["images"], test["labels"]  # [0, 1] pixels: each network standardises them its own way
    if tuple(model.image_shape) != pixels.shape[1:]:
        raise app.UsageError(f"--model takes {model.image_shape} images, the test images are {pixels.shape[1:]}: "
                             "pick a matching --canvas_size.")
    # Load the other networks before the long evaluation, so that a wrong file fails at once.
    judge = load_judge(model, pixels.shape[1:]) if FLAGS.occlusion_model else None
    policy_backbone = load_policy_backbone(model, pixels.shape[1:]) if FLAGS.policy_backbone else None
    os.makedirs(out_dir, exist_ok=True)

    common = dict(max_glimpses=FLAGS.glimpses, policies=FLAGS.policies, batch_size=FLAGS.batch_size,
                  item_boxes=test["boxes"], seed=FLAGS.seed, top_k=TOP_K, return_boxes=True,
                  box_glimpses=FLAGS.occlusion_glimpses if judge is not None else None)
    # A full-image classifier other than a BagNet (a ConvNet, ...) as --model: its own accuracy, no policies.
    own = FINAL if contract.has_glimpses or isinstance(model, saccade_zoo.BagNet) else "model"
    try:  # the images, or {"images", "proxy"} for a model that takes its proxy
        inputs = proxy_inputs(model, standardise(pixels, model.preprocessing), FLAGS.proxy_noise, FLAGS.seed)
    except ValueError as error:
        raise app.UsageError(f"--proxy_noise: {error}") from None
    results, boxes = evaluate_policies(model, inputs, targets, backbone_label=own,
                                       label_columns=policy_backbone is not None, **common)
    if policy_backbone is not None:
        backbone, preprocessing = policy_backbone
        extra, extra_boxes = evaluate_policies(backbone, standardise(pixels, preprocessing), targets,
                                               backbone_label=FLAGS.policy_backbone_label, label_columns=True, **common)
        results["policies"].update(extra["policies"])
        boxes.update(extra_boxes)
        results["policy_backbone"] = {"path": FLAGS.policy_backbone, "label": FLAGS.policy_backbone_label,
                                      **{k: v for k, v in extra.items() if k.startswith("full_image")}}
    if judge is not None:
        glimpses = FLAGS.occlusion_glimpses

        def classify(images):  # [0, 1] pixels, occluded with black, in the judge's own standardisation
            images = standardise(images, judge.preprocessing)
            return judge.predict(images, batch_size=FLAGS.batch_size, verbose=0)["logits"]

        results["occlusion"] = {
            "judge": FLAGS.occlusion_model, "glimpses": glimpses,
            "occluded_value": black_value(judge.preprocessing, pixels.shape[-1]).tolist(),
            "unoccluded": float(judge.contract.correct(np.asarray(classify(pixels)), targets).mean())}
        for column, column_boxes in boxes.items():
            results["occlusion"][column] = occlusion_accuracy(classify, pixels, targets, column_boxes[:, :glimpses],
                                                              contract=judge.contract)
    results.update(model=FLAGS.model, data=FLAGS.data, data_dir=FLAGS.data_dir, test_examples=len(pixels),
                   seed=FLAGS.seed, proxy_noise=FLAGS.proxy_noise if getattr(model, "proxy_input", False) else None)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    columns = csv_columns(contract)
    write_csv(os.path.join(out_dir, "results.csv"), columns, csv_rows(results, columns))
    if judge is not None:
        write_csv(os.path.join(out_dir, "occlusion.csv"), OCCLUSION_COLUMNS, occlusion_rows(results, boxes))

    metric = "exact-match accuracy (every label right)" if contract.multi_label else "top-1"
    print(f"{metric} vs glimpses:\n{format_accuracy_table(results, digits=4)}")
    if contract.multi_label:
        print("\nper-label accuracy vs glimpses (fraction of (image, class) decisions right):\n"
              f"{format_accuracy_table(results, digits=4, metric=LABEL_ACCURACY)}")
    if results["top_k"]["reported"]:
        print(f"\ntop-{TOP_K} vs glimpses:\n{format_accuracy_table(results, digits=4, metric=f'top{TOP_K}')}")
    else:
        print(f"\n(no top-{TOP_K}: {results['top_k']['reason']})")
    names = list(results["policies"])
    if names:
        plot_accuracy_vs_glimpses({n: results["policies"][n]["accuracy"] for n in names},
                                  os.path.join(out_dir, "accuracy_vs_glimpses.png"), None, results["full_image"])
        plot_accuracy_vs_glimpses({n: results["policies"][n]["coverage"] for n in names},
                                  os.path.join(out_dir, "coverage_vs_glimpses.png"), None, ylabel="image coverage")
    if judge is not None:
        print("\nocclusion accuracy:", {k: round(v, 4) for k, v in results["occlusion"].items()
                                        if k == "unoccluded" or k in boxes})
    pictures = []
    if contract.has_glimpses and FLAGS.glimpse_pictures:
        names = picture_class_names(model, config, "sample" if FLAGS.data == "sample" else FLAGS.data_dir)
        pictures = glimpse_pictures(model, inputs, pixels, targets, names, out_dir, FLAGS.glimpse_pictures)
    files = ", ".join(["results.json", "results.csv"] + (["occlusion.csv"] if judge is not None else []) + pictures)
    print(f"wrote {files} to {out_dir}")


if __name__ == "__main__":
    import _malloc  # tools/_malloc.py: restart under tcmalloc where installed (faster TensorFlow on CPU)
    _malloc.reexec_with_tcmalloc()
    sys.exit(app.run(main))
