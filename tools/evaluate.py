"""Evaluate a saved zoo model: top-1 and image coverage vs number of glimpses for its learned policy and the
engineered policies on the same backbone, glimpse hit rate on the items, the backbone's full-image accuracy,
and occlusion accuracy (paper Fig. 5b: glimpse boxes set to 0, then classified by a full-image classifier).

    python tools/evaluate.py --model=runs/quickstart/model.keras --output_dir=runs/quickstart/eval
    python tools/evaluate.py --model=runs/fashion/model.keras --data=idx --occlusion_model=runs/fashion/representation/final.keras
"""
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
flags.DEFINE_string("occlusion_model", None, "Optional .keras full-image classifier (e.g. a step-1 BagNet; for a "
                    "glimpse model its BagNet's full-image logits are used) to classify images whose glimpses are "
                    "occluded.")
flags.DEFINE_integer("occlusion_glimpses", 6, "Glimpses occluded for the occlusion test.")
flags.DEFINE_string("output_dir", None, "Where results.json and the plots go (default: beside --model).")
flags.DEFINE_integer("batch_size", 64, "Inference batch size.")


def main(argv):
    del argv
    import keras
    import numpy as np

    import saccade_zoo  # noqa: F401  (registers the classes)
    from saccade_zoo.data.cluttered import ClutteredConfig, cluttered_split
    from saccade_zoo.evaluation import (evaluate_policies, format_accuracy_table, occlusion_accuracy,
                                        plot_accuracy_vs_glimpses)
    from saccade_zoo.models.base import ZooModel

    if not os.path.isfile(FLAGS.model):
        raise app.UsageError(f"--model {FLAGS.model!r} is not a file.")
    model = keras.models.load_model(FLAGS.model)
    if not isinstance(model, ZooModel):
        raise app.UsageError(f"--model {FLAGS.model} is a {type(model).__name__}, not a saccade_zoo model.")
    contract = model.contract
    task = FLAGS.task or ("identify" if contract.multi_label else "sum" if contract.num_classes == 19 else "single")
    out_dir = FLAGS.output_dir or os.path.join(os.path.dirname(os.path.abspath(FLAGS.model)), "eval")
    os.makedirs(out_dir, exist_ok=True)
    config = ClutteredConfig(canvas_size=FLAGS.canvas_size, num_distractors=FLAGS.num_distractors, task=task,
                             num_items=1 if task == "single" else 2)
    test = cluttered_split("test", "sample" if FLAGS.data == "sample" else FLAGS.data_dir, FLAGS.test_examples,
                           config, FLAGS.seed)
    images, targets = test["images"], test["labels"]
    results = evaluate_policies(model, images, targets, FLAGS.glimpses, FLAGS.policies, FLAGS.batch_size,
                                item_boxes=test["boxes"], seed=FLAGS.seed)
    if FLAGS.occlusion_model:
        judge = keras.models.load_model(FLAGS.occlusion_model)
        judge = getattr(judge, "backbone", judge)  # a glimpse model's judge is its full-image BagNet
        classify = lambda x: judge.predict(x, batch_size=FLAGS.batch_size, verbose=0)["logits"]  # noqa: E731
        results["occlusion"] = {"judge": FLAGS.occlusion_model, "glimpses": FLAGS.occlusion_glimpses,
                                "unoccluded": float(contract.correct(np.asarray(classify(images)), targets).mean())}
        candidates = {}
        if isinstance(model, saccade_zoo.GlimpseModel) and not isinstance(model, saccade_zoo.PolicyClassifier):
            candidates["learned"] = model.with_glimpses(FLAGS.occlusion_glimpses)
        host = model  # the engineered policies run on a BagNet-based model's backbone, or on a bare BagNet
        if isinstance(model, saccade_zoo.BagNet):
            host = saccade_zoo.PolicyClassifier(model, num_glimpses=FLAGS.occlusion_glimpses, metadata=model.metadata)
        if hasattr(host, "with_policy"):
            for policy in FLAGS.policies:
                candidates[policy] = host.with_policy(policy, num_glimpses=FLAGS.occlusion_glimpses, seed=FLAGS.seed)
        for name, candidate in candidates.items():
            boxes = np.asarray(candidate.predict(images, batch_size=FLAGS.batch_size, verbose=0)["boxes"])
            results["occlusion"][name] = occlusion_accuracy(classify, images, targets, boxes, contract=contract)
    results.update(model=FLAGS.model, data=FLAGS.data, data_dir=FLAGS.data_dir, test_examples=len(images),
                   seed=FLAGS.seed)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(format_accuracy_table(results, digits=4))
    names = list(results["policies"])
    if names:
        plot_accuracy_vs_glimpses({n: results["policies"][n]["accuracy"] for n in names},
                                  os.path.join(out_dir, "accuracy_vs_glimpses.png"), None, results["full_image"])
        plot_accuracy_vs_glimpses({n: results["policies"][n]["coverage"] for n in names},
                                  os.path.join(out_dir, "coverage_vs_glimpses.png"), None, ylabel="image coverage")
    if "occlusion" in results:
        print("occlusion accuracy:", {k: v for k, v in results["occlusion"].items() if isinstance(v, float)})
    print(f"wrote {out_dir}/results.json")


if __name__ == "__main__":
    sys.exit(app.run(main))
