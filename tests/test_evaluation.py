"""Evaluation metrics against hand-computed values, and the policy comparison on a real model."""
import numpy as np

import saccade_zoo
from saccade_zoo.data import ClutteredConfig, generate_cluttered, load_sample
from saccade_zoo.evaluation import (accuracy_vs_glimpses, coverage_vs_glimpses, evaluate_policies,
                                    format_accuracy_table, occlude, occlusion_accuracy, plot_accuracy_vs_glimpses,
                                    plot_glimpses)


def test_accuracy_after_t_glimpses_averages_the_first_t_glimpse_logits():
    step_logits = np.array([[[2.0, 0.0], [0.0, 5.0], [0.0, 0.0]],     # right after 1, wrong after 2 and 3
                            [[0.0, 1.0], [3.0, 0.0], [3.0, 0.0]]])    # wrong after 1, right after 2 and 3
    np.testing.assert_allclose(accuracy_vs_glimpses(step_logits, [0, 0]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(accuracy_vs_glimpses(step_logits, [1, 1]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(accuracy_vs_glimpses(step_logits[:1], [0]), [1.0, 0.0, 0.0])


def test_coverage_counts_the_union_of_boxes():
    boxes = np.array([[[0, 0, 5, 5], [0, 0, 5, 5], [5, 5, 10, 10]]], "float32")  # a repeat adds nothing
    np.testing.assert_allclose(coverage_vs_glimpses(boxes, (10, 10)), [0.25, 0.25, 0.5])


def test_occlusion_sets_exactly_the_boxes_to_zero():
    images = np.ones((1, 6, 6, 1), "float32")
    out = occlude(images, np.array([[[1, 2, 3, 4]]], "float32"))
    assert out[0, 1:3, 2:4].sum() == 0 and out.sum() == 36 - 4 and images.sum() == 36
    acc = occlusion_accuracy(lambda x: np.stack([x.sum(axis=(1, 2, 3)), np.full(len(x), 33.0)], -1), images, [1],
                             np.array([[[1, 2, 3, 4]]], "float32"))
    assert acc == 1.0  # 32 < 33 after occlusion: class 1 wins


def test_evaluate_policies_and_pictures(tmp_path):
    items, labels = load_sample("test")
    data = generate_cluttered(items, labels, 12, ClutteredConfig(), seed=0)
    model = saccade_zoo.build("saccader_cluttered100")
    results = evaluate_policies(model, data["images"], data["labels"], max_glimpses=4,
                                policies=("ordered_logits", "center"), item_boxes=data["boxes"])
    assert set(results["policies"]) == {"learned", "ordered_logits", "center"}
    for entry in results["policies"].values():
        assert len(entry["accuracy"]) == len(entry["coverage"]) == len(entry["hit_rate"]) == 4
        assert np.all(np.diff(entry["coverage"]) >= 0) and 0 < entry["coverage"][0] <= 1
    # The centre cell's 33 px box on a 100 px image covers 10.9% of it.
    np.testing.assert_allclose(results["policies"]["center"]["coverage"][0], 33 * 33 / 100 ** 2, rtol=1e-6)
    table = format_accuracy_table(results)
    assert table.splitlines()[0].split() == ["glimpses", "learned", "ordered_logits", "center"]
    assert len(table.splitlines()) == 4 + 2
    out = model(data["images"][:4])
    plot_glimpses(data["images"][:4], np.asarray(out["boxes"]), tmp_path / "g.png", labels=data["labels"][:4],
                  predictions=np.asarray(out["logits"]).argmax(-1))
    plot_accuracy_vs_glimpses({k: v["accuracy"] for k, v in results["policies"].items()}, tmp_path / "a.png", 2, 0.5)
    assert (tmp_path / "g.png").stat().st_size > 5000 and (tmp_path / "a.png").stat().st_size > 5000
