"""tools/evaluate.py end to end on the shipped sample: a Saccader and a bare BagNet, every policy, top-5, the CSV
tables, engineered policies on a second (step-1) backbone, occlusion judged by a full-image classifier, multi-label
models (exact-match and per-label accuracy, no top-5) and the glimpse pictures of right and wrong predictions."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras

import saccade_zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV_HEADER = ["policy", "backbone", "glimpses", "top1", "top5", "coverage", "hit_rate"]
PICTURES = ("glimpses_right.png", "glimpses_wrong.png")


def evaluate(*args):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("evaluate")
    model = saccade_zoo.build("saccader_cluttered100")
    model.save(root / "saccader.keras")
    model.backbone.save(root / "bagnet.keras")
    # A separately initialised Saccader stands for the one saved after step 1 (--policy_backbone reads its BagNet).
    saccade_zoo.build("saccader_cluttered100").save(root / "step1.keras")
    # A full-image judge that standardises its pixels with mean 0.5, std 0.25: black is (0 - 0.5) / 0.25 = -2.
    judge = saccade_zoo.build("bagnet33_cluttered100")
    judge.metadata["preprocessing"] = {**judge.metadata["preprocessing"], "mean": [0.5], "std": [0.25]}
    judge.save(root / "judge.keras")
    return root


def test_saccader_every_policy_top5_csv_and_occlusion(saved):
    out = saved / "eval_saccader"
    run = evaluate(f"--model={saved / 'saccader.keras'}", "--test_examples=32", "--glimpses=3",
                   "--policies=ordered_logits,random,center", f"--occlusion_model={saved / 'judge.keras'}",
                   "--occlusion_glimpses=2", f"--output_dir={out}", "--batch_size=16")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"learned", "ordered_logits", "random", "center"}
    for name, entry in results["policies"].items():
        assert entry["policy"] == name and entry["backbone"] == "final backbone"
        assert len(entry["accuracy"]) == 3 and all(0.0 <= a <= 1.0 for a in entry["accuracy"]), name
        assert len(entry["top5"]) == 3 and all(t5 >= t1 for t5, t1 in zip(entry["top5"], entry["accuracy"])), name
        coverage = np.asarray(entry["coverage"])
        # coverage of the union of glimpse boxes never shrinks, and distinct cells add to it (a cell can be covered
        # by its two neighbours, so a single step may add nothing)
        assert np.all(np.diff(coverage) >= 0) and coverage[0] < coverage[-1] <= 1.0, name
        assert len(entry["hit_rate"]) == 3, name
    assert results["top_k"] == {"k": 5, "reported": True} and 0.0 <= results["full_image_top5"] <= 1.0
    occlusion = results["occlusion"]
    assert occlusion["glimpses"] == 2 and 0.0 <= occlusion["unoccluded"] <= 1.0
    assert occlusion["occluded_value"] == [-2.0]  # black in the judge's standardisation
    assert {"learned", "ordered_logits", "random", "center"} <= set(occlusion)
    assert results["test_examples"] == 32 and results["seed"] == 1
    assert (out / "accuracy_vs_glimpses.png").stat().st_size > 0 and (out / "coverage_vs_glimpses.png").is_file()
    assert "learned" in run.stdout and "top-5 vs glimpses" in run.stdout and "wrote" in run.stdout
    # A single-label model: no per-label accuracy; glimpse pictures (or the reason one is missing).
    assert "per-label" not in run.stdout and "label_accuracy" not in results
    assert all("label_accuracy" not in entry for entry in results["policies"].values())
    for picture in PICTURES:
        assert (out / picture).is_file() or f"no {picture}" in run.stdout, picture

    header, rows = read_csv(out / "results.csv")
    assert header == CSV_HEADER and len(rows) == 4 * 3
    for row in rows:
        entry = results["policies"][row["policy"]]
        t = int(row["glimpses"]) - 1
        assert row["backbone"] == "final backbone"
        for column, key in (("top1", "accuracy"), ("top5", "top5"), ("coverage", "coverage"), ("hit_rate", "hit_rate")):
            assert float(row[column]) == pytest.approx(entry[key][t]), (row, column)
    assert sorted((r["policy"], r["glimpses"]) for r in rows) == sorted(
        (p, str(t)) for p in results["policies"] for t in (1, 2, 3))
    header, rows = read_csv(out / "occlusion.csv")
    assert header == ["policy", "backbone", "occluded_glimpses", "judge", "accuracy"] and len(rows) == 1 + 4
    assert rows[0]["policy"] == "none" and rows[0]["occluded_glimpses"] == "0"
    assert float(rows[0]["accuracy"]) == pytest.approx(occlusion["unoccluded"])
    for row in rows[1:]:
        assert row["occluded_glimpses"] == "2" and float(row["accuracy"]) == pytest.approx(occlusion[row["policy"]])


def test_policy_backbone_side_by_side(saved):
    out = saved / "eval_policy_backbone"
    # 3 occluded glimpses, more than the tables' 2: the boxes of one 3-glimpse run serve both.
    run = evaluate(f"--model={saved / 'saccader.keras'}", "--test_examples=16", "--glimpses=2",
                   "--policies=ordered_logits,center", f"--policy_backbone={saved / 'step1.keras'}",
                   f"--occlusion_model={saved / 'bagnet.keras'}", "--occlusion_glimpses=3", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    columns = {"learned", "ordered_logits (final backbone)", "center (final backbone)",
               "ordered_logits (step-1 BagNet)", "center (step-1 BagNet)"}
    assert set(results["policies"]) == columns
    assert results["policies"]["center (step-1 BagNet)"]["policy"] == "center"
    assert results["policies"]["center (step-1 BagNet)"]["backbone"] == "step-1 BagNet"
    extra = results["policy_backbone"]
    assert extra["label"] == "step-1 BagNet" and extra["path"].endswith("step1.keras")
    assert 0.0 <= extra["full_image"] <= 1.0 and 0.0 <= extra["full_image_top5"] <= 1.0
    # The centre policy's boxes do not depend on the backbone.
    assert (results["policies"]["center (step-1 BagNet)"]["coverage"]
            == results["policies"]["center (final backbone)"]["coverage"])
    assert columns <= set(results["occlusion"]) and results["occlusion"]["glimpses"] == 3
    assert results["occlusion"]["occluded_value"] == [0.0]
    header_line = next(line for line in run.stdout.splitlines() if line.startswith("glimpses"))
    assert "ordered_logits (final backbone)" in header_line and "ordered_logits (step-1 BagNet)" in header_line
    assert "full image (all cells, step-1 BagNet)" in run.stdout
    _, rows = read_csv(out / "results.csv")
    assert len(rows) == 5 * 2
    assert {(r["policy"], r["backbone"]) for r in rows} == {
        ("learned", "final backbone"), ("ordered_logits", "final backbone"), ("center", "final backbone"),
        ("ordered_logits", "step-1 BagNet"), ("center", "step-1 BagNet")}
    _, rows = read_csv(out / "occlusion.csv")
    assert {(r["policy"], r["backbone"]) for r in rows[1:]} == {
        ("learned", "final backbone"), ("ordered_logits", "final backbone"), ("center", "final backbone"),
        ("ordered_logits", "step-1 BagNet"), ("center", "step-1 BagNet")}


def test_glimpse_model_as_judge_is_refused(saved):
    out = saved / "eval_refused"
    run = evaluate(f"--model={saved / 'saccader.keras'}", "--test_examples=8", "--glimpses=2",
                   f"--occlusion_model={saved / 'saccader.keras'}", f"--output_dir={out}")
    assert run.returncode != 0
    assert "is a glimpse model" in run.stderr and "full-image classifier" in run.stderr, run.stderr[-3000:]
    assert not (out / "results.json").exists()


def test_bare_bagnet_is_read_at_engineered_policies(saved):
    out = saved / "eval_bagnet"
    run = evaluate(f"--model={saved / 'bagnet.keras'}", "--test_examples=16", "--glimpses=2",
                   "--policies=sobel_mean,center", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"sobel_mean", "center"} and "occlusion" not in results
    assert not (out / "occlusion.csv").exists() and len(read_csv(out / "results.csv")[1]) == 2 * 2
    assert not any((out / picture).exists() for picture in PICTURES)  # not a glimpse model


def test_bad_model_path_fails_clearly(tmp_path):
    run = evaluate(f"--model={tmp_path / 'missing.keras'}")
    assert run.returncode != 0 and "is not a file" in run.stderr


def test_bare_bagnet_occlusion_uses_the_engineered_policies(saved):
    out = saved / "eval_bagnet_occlusion"
    run = evaluate(f"--model={saved / 'bagnet.keras'}", "--test_examples=16", "--glimpses=2", "--policies=center",
                   f"--occlusion_model={saved / 'bagnet.keras'}", "--occlusion_glimpses=2", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    occlusion = json.loads((out / "results.json").read_text())["occlusion"]
    assert set(occlusion) == {"judge", "glimpses", "occluded_value", "unoccluded", "center"}


def test_multi_label_model_reports_no_top5(tmp_path):
    keras.utils.set_random_seed(0)
    saccade_zoo.build("saccader_cluttered100", activation="sigmoid").save(tmp_path / "identify.keras")
    out = tmp_path / "eval"
    run = evaluate(f"--model={tmp_path / 'identify.keras'}", "--test_examples=8", "--glimpses=2",
                   "--policies=center", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["top_k"]["reported"] is False and "multi-label" in results["top_k"]["reason"]
    assert all("top5" not in entry for entry in results["policies"].values())
    header, rows = read_csv(out / "results.csv")
    assert header == CSV_HEADER + ["label_accuracy"] and len(rows) == 2 * 2
    assert all(r["top5"] == "" and r["top1"] != "" and r["label_accuracy"] != "" for r in rows)
    assert all(len(entry["label_accuracy"]) == 2 for entry in results["policies"].values())
    assert 0.0 <= results["full_image_label_accuracy"] <= 1.0
    assert "no top-5" in run.stdout and "per-label accuracy vs glimpses" in run.stdout


def test_variational_multi_label_per_label_accuracy_and_glimpse_pictures(tmp_path):
    from saccade_zoo.data.cluttered import ClutteredConfig, cluttered_split
    from saccade_zoo.models.variational import VariationalSaccader

    # The test images tools/evaluate.py makes (--task=identify, --seed=1); the model always predicts their most
    # common label set, so that some images are right and the others wrong, and every accuracy is known.
    targets = cluttered_split("test", "sample", 48, ClutteredConfig(task="identify", num_items=2), 1)["labels"]
    sets, counts = np.unique(targets > 0.5, axis=0, return_counts=True)
    always = sets[counts.argmax()]
    assert 1 <= counts.max() < len(targets)
    keras.utils.set_random_seed(0)
    model = VariationalSaccader(image_shape=(100, 100, 1), num_classes=10, num_glimpses=2, proxy_shape=(16, 16, 1),
                                glimpse_size=8, encoder_filters=(8, 16), feature_dim=16, units=16,
                                decoder_filters=(8, 8), crop_filters=(8, 16), crop_units=16, groups=4,
                                activation="sigmoid")
    head = model.crop_classifier.head
    head.kernel.assign(np.zeros(head.kernel.shape, "float32"))
    head.bias.assign(np.where(always, 10.0, -10.0).astype("float32"))
    model.save(tmp_path / "variational.keras")
    out = tmp_path / "eval"
    run = evaluate(f"--model={tmp_path / 'variational.keras'}", "--test_examples=48", "--glimpses=3",
                   "--task=identify", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    learned = results["policies"]["learned"]
    exact = counts.max() / len(targets)
    per_label = float(((targets > 0.5) == always).mean())
    assert exact < per_label  # the two measures differ
    np.testing.assert_allclose(learned["accuracy"], [exact] * 3)
    np.testing.assert_allclose(learned["label_accuracy"], [per_label] * 3)
    assert "top5" not in learned and results["top_k"]["reported"] is False
    header, rows = read_csv(out / "results.csv")
    assert header == CSV_HEADER + ["label_accuracy"] and len(rows) == 3
    for row in rows:
        assert float(row["top1"]) == pytest.approx(exact) and float(row["label_accuracy"]) == pytest.approx(per_label)
        assert row["top5"] == ""
    lines = run.stdout.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("per-label accuracy vs glimpses")))
    assert lines[table + 1].split() == ["glimpses", "learned"]
    assert [float(line.split()[1]) for line in lines[table + 2:table + 5]] == pytest.approx([per_label] * 3, abs=1e-4)
    assert "exact-match accuracy" in run.stdout and "no top-5" in run.stdout
    for picture in PICTURES:
        assert (out / picture).stat().st_size > 5000, picture
        assert picture in run.stdout


def test_noisy_proxy_model_gets_its_proxies_and_a_plain_model_refuses_noise(tmp_path):
    from saccade_zoo.models.variational import VariationalSaccader

    keras.utils.set_random_seed(0)
    tiny = dict(image_shape=(100, 100, 1), num_classes=10, num_glimpses=2, proxy_shape=(16, 16, 1), glimpse_size=8,
                encoder_filters=(8, 16), feature_dim=16, units=16, decoder_filters=(8, 8), crop_filters=(8, 16),
                crop_units=16, groups=4)
    VariationalSaccader(proxy_input=True, **tiny).save(tmp_path / "noisy.keras")
    VariationalSaccader(**tiny).save(tmp_path / "plain.keras")
    runs = {}
    for noise in ("0", "2"):
        out = tmp_path / f"eval{noise}"
        run = evaluate(f"--model={tmp_path / 'noisy.keras'}", "--test_examples=16", "--glimpses=2",
                       f"--proxy_noise={noise}", "--glimpse_pictures=2", f"--output_dir={out}")
        assert run.returncode == 0, run.stderr[-3000:]
        runs[noise] = json.loads((out / "results.json").read_text())
        assert runs[noise]["proxy_noise"] == float(noise)
    # The noise reaches the model: its glimpses move.
    assert runs["0"]["policies"]["learned"]["coverage"] != runs["2"]["policies"]["learned"]["coverage"]
    refused = evaluate(f"--model={tmp_path / 'plain.keras'}", "--test_examples=8", "--proxy_noise=0.5",
                       f"--output_dir={tmp_path / 'refused'}")
    assert refused.returncode != 0 and "makes its own" in refused.stderr


def test_any_full_image_classifier_judges_and_is_evaluated(saved):
    if "convnet_cluttered100" not in saccade_zoo.list_models():
        pytest.skip("no convnet_cluttered100 preset")
    keras.utils.set_random_seed(0)
    saccade_zoo.build("convnet_cluttered100").save(saved / "convnet.keras")
    out = saved / "eval_convnet_judge"
    run = evaluate(f"--model={saved / 'bagnet.keras'}", "--test_examples=8", "--glimpses=2", "--policies=center",
                   f"--occlusion_model={saved / 'convnet.keras'}", "--occlusion_glimpses=1", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    occlusion = json.loads((out / "results.json").read_text())["occlusion"]
    assert occlusion["judge"].endswith("convnet.keras") and 0.0 <= occlusion["center"] <= 1.0
    # As --model: its full-image accuracy (and top-5), no policies to compare.
    out = saved / "eval_convnet"
    run = evaluate(f"--model={saved / 'convnet.keras'}", "--test_examples=8", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["policies"] == {} and 0.0 <= results["full_image"] <= results["full_image_top5"] <= 1.0
