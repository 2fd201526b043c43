"""Evaluation metrics against hand-computed values, and the policy comparison on a real model."""
import numpy as np
import pytest

import saccade_zoo
from saccade_zoo.contract import OutputContract
from saccade_zoo.data import ClutteredConfig, generate_cluttered, load_sample
from saccade_zoo.evaluation import (accuracy_vs_glimpses, black_value, coverage_vs_glimpses, evaluate_policies,
                                    format_accuracy_table, label_accuracy_vs_glimpses, label_text, occlude,
                                    occlusion_accuracy, plot_accuracy_vs_glimpses, plot_glimpses, right_and_wrong,
                                    standardise, top_k_accuracy_vs_glimpses, top_k_correct, top_k_note)


def test_accuracy_after_t_glimpses_averages_the_first_t_glimpse_logits():
    step_logits = np.array([[[2.0, 0.0], [0.0, 5.0], [0.0, 0.0]],     # right after 1, wrong after 2 and 3
                            [[0.0, 1.0], [3.0, 0.0], [3.0, 0.0]]])    # wrong after 1, right after 2 and 3
    np.testing.assert_allclose(accuracy_vs_glimpses(step_logits, [0, 0]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(accuracy_vs_glimpses(step_logits, [1, 1]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(accuracy_vs_glimpses(step_logits[:1], [0]), [1.0, 0.0, 0.0])


def test_multi_label_exact_match_and_per_label_accuracy_after_t_glimpses():
    identify = OutputContract(3, num_glimpses=2, activation="sigmoid")
    step_logits = np.array([[[1.0, -1.0, -1.0], [1.0, 5.0, -1.0]],     # labels 0+1: 1 of 3 wrong, then all right
                            [[-1.0, -1.0, 1.0], [-1.0, 3.0, -5.0]]])   # label 2: all right, then 2 of 3 wrong
    labels = np.array([[1, 1, 0], [0, 0, 1]], "float32")
    # Exact match: one image of two right after 1 and after 2 glimpses; per label: 5 of 6, then 4 of 6 decisions.
    np.testing.assert_allclose(accuracy_vs_glimpses(step_logits, labels, identify), [0.5, 0.5])
    np.testing.assert_allclose(label_accuracy_vs_glimpses(step_logits, labels, identify), [5 / 6, 4 / 6])
    np.testing.assert_allclose(label_accuracy_vs_glimpses(step_logits, labels), [5 / 6, 4 / 6])  # default: sigmoid
    np.testing.assert_allclose(label_accuracy_vs_glimpses(step_logits[:1], labels[:1]), [2 / 3, 1.0])
    with pytest.raises(ValueError, match="multi-label"):
        label_accuracy_vs_glimpses(step_logits, labels, OutputContract(3))
    with pytest.raises(ValueError, match="multi-hot"):
        label_accuracy_vs_glimpses(step_logits, [0, 2], identify)


class FixedGlimpseModel:
    """Stands for a glimpse model: logits are the images' first pixel's channels, box t of image i is
    (i, t, i + 1, t + 1.5); counts its predict calls."""

    def __init__(self, contract):
        self.contract, self.calls = contract, 0

    def predict(self, images, batch_size=None, verbose=0):
        self.calls += 1
        index = images[:, 1, 1, 0]
        steps = np.arange(self.contract.num_glimpses, dtype="float32")
        boxes = np.stack(np.broadcast_arrays(index[:, None], steps, index[:, None] + 1, steps + 1.5), axis=-1)
        return {"logits": images[:, 0, 0, :], "boxes": boxes}


def test_right_and_wrong_picks_the_first_of_each_and_stops_reading():
    contract = OutputContract(3, num_glimpses=2, activation="sigmoid")
    labels = np.tile(np.array([[1, 1, 0]], "float32"), (7, 1))
    images = np.zeros((7, 2, 2, 3), "float32")
    images[:, 1, 1, 0] = np.arange(7)
    images[:, 0, 0, :] = -1.0
    images[[1, 4, 5], 0, 0, :] = [2.0, 2.0, -2.0]  # exact match
    images[2, 0, 0, :] = [2.0, -2.0, -2.0]  # one label of two: wrong
    model = FixedGlimpseModel(contract)
    found = right_and_wrong(model, images, labels, count=2, batch_size=3)
    assert found["right"]["index"].tolist() == [1, 4] and found["wrong"]["index"].tolist() == [0, 2]
    assert model.calls == 2  # images 6.. are never read
    assert found["right"]["predictions"].tolist() == [[1, 1, 0]] * 2
    assert found["wrong"]["predictions"].tolist() == [[0, 0, 0], [1, 0, 0]]
    np.testing.assert_array_equal(found["wrong"]["labels"], labels[[0, 2]])
    np.testing.assert_array_equal(found["right"]["boxes"], [[[1, 0, 2, 1.5], [1, 1, 2, 2.5]],
                                                            [[4, 0, 5, 1.5], [4, 1, 5, 2.5]]])
    # None right: an empty selection of the right shapes; every batch is read looking for one.
    model = FixedGlimpseModel(contract)
    found = right_and_wrong(model, images[[0, 2, 3]], labels[:3], count=8, batch_size=2)
    assert found["right"]["index"].tolist() == [] and found["right"]["boxes"].shape == (0, 2, 4)
    assert found["right"]["predictions"].shape == (0, 3) and found["wrong"]["index"].tolist() == [0, 1, 2]
    assert model.calls == 2
    with pytest.raises(ValueError, match="glimpse model"):
        right_and_wrong(FixedGlimpseModel(OutputContract(3)), images, labels)


def test_label_text_names_the_positive_classes():
    names = ["cat", "dog", "fox"]
    assert label_text(np.array([1.0, 0.0, 1.0]), names) == "cat+fox"
    assert label_text(np.array([0, 1, 0]), names) == "dog"
    assert label_text(np.zeros(3), names) == "none"
    assert label_text(np.int64(2), names) == "fox" and label_text(2) == "2" and label_text([0, 1, 1]) == "1+2"


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


def test_occlusion_is_black_in_pixel_space_for_any_standardisation():
    # ImageNet presets standardise with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225): a black pixel is
    # (0 - mean) / std in the model's input, not 0.
    preprocessing = saccade_zoo.get_preset("saccader_imagenet")["preprocessing"]
    mean, std = np.float32(preprocessing["mean"]), np.float32(preprocessing["std"])
    pixels = np.random.default_rng(0).uniform(0.2, 1.0, (2, 8, 8, 3)).astype("float32")
    boxes = np.array([[[1, 2, 3, 5]], [[0, 0, 8, 2]]], "float32")
    ready = saccade_zoo.preprocess(pixels, "saccader_imagenet")
    np.testing.assert_array_equal(standardise(pixels, "saccader_imagenet"), ready)
    out = occlude(ready, boxes, preprocessing=preprocessing)
    black = (np.float32(0) - mean) / std
    np.testing.assert_array_equal(black_value(preprocessing), black)
    assert np.all(black < -1.7) and np.all(black > -2.2)
    np.testing.assert_array_equal(out[0, 1:3, 2:5], np.broadcast_to(black, (2, 3, 3)))
    np.testing.assert_array_equal(out[1, :, :2], np.broadcast_to(black, (8, 2, 3)))
    mask = np.zeros(out.shape, bool)
    mask[0, 1:3, 2:5] = mask[1, :, :2] = True
    np.testing.assert_array_equal(out[~mask], ready[~mask])  # nothing else changes, and the input is not touched
    np.testing.assert_array_equal(ready, saccade_zoo.preprocess(pixels, "saccader_imagenet"))
    # The same as occluding the [0, 1] pixels with 0 and standardising after.
    np.testing.assert_array_equal(standardise(occlude(pixels, boxes), preprocessing), out)
    # What the judge receives through occlusion_accuracy: its own black, and its own standardisation elsewhere.
    seen = []
    occlusion_accuracy(lambda x: seen.append(x) or np.zeros((len(x), 2)), ready, [0, 0], boxes,
                       preprocessing=preprocessing)
    np.testing.assert_array_equal(seen[0], out)


def test_occlusion_with_mean_0_std_1_is_0_and_value_overrides():
    grey = {"mean": (0.0,), "std": (1.0,)}
    pixels = np.full((1, 4, 4, 1), 0.5, "float32")
    boxes = np.array([[[0, 0, 2, 2]]], "float32")
    out = occlude(pixels, boxes, preprocessing=grey)
    assert out[0, :2, :2].tolist() == [[[0.0]] * 2] * 2 and out.sum() == 0.5 * 12
    np.testing.assert_array_equal(out, occlude(pixels, boxes))  # no preprocessing: [0, 1] pixels, black is 0
    np.testing.assert_array_equal(black_value(None, channels=3), [0, 0, 0])
    assert np.all(occlude(pixels, boxes, value=0.25)[0, :2, :2] == 0.25)
    with pytest.raises(ValueError, match="not both"):
        occlude(pixels, boxes, preprocessing=grey, value=0.0)
    # A model's preprocessing (its metadata) works as well as the dict.
    model = type("Judge", (), {"preprocessing": {"mean": [0.5], "std": [0.25]}})()
    np.testing.assert_array_equal(black_value(model), [-2.0])
    np.testing.assert_array_equal(occlude(standardise(pixels, model.preprocessing), boxes, preprocessing=model)[0, 0],
                                  [[-2.0], [-2.0], [0.0], [0.0]])


def brute_top_k(step_logits, labels, k):
    """Top-k after 1..T glimpses by sorting: a stable sort of -scores puts tied classes in index order (argmax's
    tie rule)."""
    running = np.cumsum(np.asarray(step_logits, np.float64), axis=1) / np.arange(1, step_logits.shape[1] + 1)[:, None]
    order = np.argsort(-running, axis=-1, kind="stable")[..., :k]
    return (order == np.asarray(labels)[:, None, None]).any(axis=-1).mean(axis=0)


def test_top_k_after_t_glimpses_by_hand_with_ties():
    step_logits = np.array([
        [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6]],      # label 1: 5 classes higher, 6th after 1 and 2
        [[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]],      # all tied, label 4: classes 0-3 rank ahead, 5th
        [[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, -1, 8]],     # label 6: tied last (7th) after 1, first after 2
    ], "float64")
    labels = [1, 4, 6]
    np.testing.assert_allclose(top_k_accuracy_vs_glimpses(step_logits, labels, 5), [1 / 3, 2 / 3])
    np.testing.assert_allclose(top_k_accuracy_vs_glimpses(step_logits, labels, 6), [2 / 3, 1.0])
    np.testing.assert_allclose(top_k_accuracy_vs_glimpses(step_logits, labels, 1), [0.0, 1 / 3])
    # Ties at the k-th place: label 5 of an all-tied row ranks 6th, so it is out of the top 5.
    assert top_k_correct(np.zeros((1, 7)), [4], 5).tolist() == [True]
    assert top_k_correct(np.zeros((1, 7)), [5], 5).tolist() == [False]
    for k in (1, 2, 5, 7):
        np.testing.assert_allclose(top_k_accuracy_vs_glimpses(step_logits, labels, k), brute_top_k(step_logits,
                                                                                                    labels, k))


def test_top_k_matches_a_sort_on_random_ties_and_top_1_is_argmax():
    rng = np.random.default_rng(3)
    step_logits = rng.integers(0, 3, (200, 4, 9)).astype("float32")  # many ties
    labels = rng.integers(0, 9, 200)
    for k in (1, 3, 5, 9):
        np.testing.assert_allclose(top_k_accuracy_vs_glimpses(step_logits, labels, k),
                                   brute_top_k(step_logits, labels, k))
    np.testing.assert_allclose(top_k_accuracy_vs_glimpses(step_logits, labels, 1),
                               accuracy_vs_glimpses(step_logits, labels))
    np.testing.assert_allclose(top_k_accuracy_vs_glimpses(step_logits, labels, 9), 1.0)
    with pytest.raises(ValueError, match="multi-label"):
        top_k_accuracy_vs_glimpses(step_logits, labels, 5, OutputContract(9, activation="sigmoid"))
    assert "not defined" in top_k_note(OutputContract(9, activation="sigmoid"), 5)
    assert "always 1" in top_k_note(OutputContract(5), 5) and top_k_note(OutputContract(6), 5) is None


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
    # Columns named by backbone (to merge two backbones side by side), top-5, and boxes for more glimpses than the
    # tables (the occlusion test's), of which the tables' glimpses are the first.
    labelled, boxes = evaluate_policies(model, data["images"], data["labels"], max_glimpses=2, policies=("center",),
                                        top_k=5, backbone_label="step-1", label_columns=True, box_glimpses=3,
                                        return_boxes=True)
    assert set(labelled["policies"]) == set(boxes) == {"learned", "center (step-1)"}
    entry = labelled["policies"]["center (step-1)"]
    assert entry["policy"] == "center" and entry["backbone"] == "step-1" and labelled["backbone"] == "step-1"
    assert labelled["top_k"] == {"k": 5, "reported": True} and labelled["full_image_top5"] >= labelled["full_image"]
    for entry in labelled["policies"].values():
        assert len(entry["top5"]) == len(entry["accuracy"]) == 2
        assert all(t5 >= t1 for t5, t1 in zip(entry["top5"], entry["accuracy"]))
    assert boxes["learned"].shape == boxes["center (step-1)"].shape == (12, 3, 4)
    np.testing.assert_array_equal(boxes["learned"][:, :2], np.asarray(model.with_glimpses(2)(data["images"])["boxes"]))
    np.testing.assert_allclose(labelled["policies"]["learned"]["coverage"],
                               coverage_vs_glimpses(boxes["learned"][:, :2], (100, 100)))
    top5 = format_accuracy_table(labelled, metric="top5").splitlines()
    assert "center (step-1)" in top5[0] and top5[-1].startswith("full image (all cells): ")
    out = model(data["images"][:4])
    plot_glimpses(data["images"][:4], np.asarray(out["boxes"]), tmp_path / "g.png", labels=data["labels"][:4],
                  predictions=np.asarray(out["logits"]).argmax(-1))
    # Multi-hot labels and fractional (continuous) boxes, two of them at the same corner.
    boxes = np.array([[[10.5, 20.25, 40.5, 50.25], [10.5, 20.25, 30.0, 30.0], [60.2, 5.7, 90.9, 35.3]]] * 2)
    plot_glimpses(data["images"][:2], boxes, tmp_path / "m.png", labels=np.eye(10)[[1, 2]] + np.eye(10)[[3, 3]],
                  predictions=np.eye(10)[[1, 2]], class_names=[f"class {i}" for i in range(10)])
    assert (tmp_path / "m.png").stat().st_size > 5000
    plot_accuracy_vs_glimpses({k: v["accuracy"] for k, v in results["policies"].items()}, tmp_path / "a.png", 2, 0.5)
    assert (tmp_path / "g.png").stat().st_size > 5000 and (tmp_path / "a.png").stat().st_size > 5000
