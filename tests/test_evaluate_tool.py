"""tools/evaluate.py end to end on the shipped sample: a Saccader and a bare BagNet, every policy, occlusion."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras

import saccade_zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def evaluate(*args):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("evaluate")
    model = saccade_zoo.build("saccader_cluttered100")
    model.save(root / "saccader.keras")
    model.backbone.save(root / "bagnet.keras")
    return root


def test_saccader_every_policy_and_occlusion(saved):
    out = saved / "eval_saccader"
    run = evaluate(f"--model={saved / 'saccader.keras'}", "--test_examples=32", "--glimpses=3",
                   "--policies=ordered_logits,random,center", f"--occlusion_model={saved / 'saccader.keras'}",
                   "--occlusion_glimpses=2", f"--output_dir={out}", "--batch_size=16")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"learned", "ordered_logits", "random", "center"}
    for name, entry in results["policies"].items():
        assert len(entry["accuracy"]) == 3 and all(0.0 <= a <= 1.0 for a in entry["accuracy"]), name
        coverage = np.asarray(entry["coverage"])
        # coverage of the union of glimpse boxes never shrinks, and distinct cells add to it (a cell can be covered
        # by its two neighbours, so a single step may add nothing)
        assert np.all(np.diff(coverage) >= 0) and coverage[0] < coverage[-1] <= 1.0, name
        assert len(entry["hit_rate"]) == 3, name
    occlusion = results["occlusion"]
    assert occlusion["glimpses"] == 2 and 0.0 <= occlusion["unoccluded"] <= 1.0
    assert {"learned", "ordered_logits", "random", "center"} <= set(occlusion)
    assert results["test_examples"] == 32 and results["seed"] == 1
    assert (out / "accuracy_vs_glimpses.png").stat().st_size > 0 and (out / "coverage_vs_glimpses.png").is_file()
    assert "learned" in run.stdout and "wrote" in run.stdout


def test_bare_bagnet_is_read_at_engineered_policies(saved):
    out = saved / "eval_bagnet"
    run = evaluate(f"--model={saved / 'bagnet.keras'}", "--test_examples=16", "--glimpses=2",
                   "--policies=sobel_mean,center", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"sobel_mean", "center"} and "occlusion" not in results


def test_bad_model_path_fails_clearly(tmp_path):
    run = evaluate(f"--model={tmp_path / 'missing.keras'}")
    assert run.returncode != 0 and "is not a file" in run.stderr


def test_bare_bagnet_occlusion_uses_the_engineered_policies(saved):
    out = saved / "eval_bagnet_occlusion"
    run = evaluate(f"--model={saved / 'bagnet.keras'}", "--test_examples=16", "--glimpses=2", "--policies=center",
                   f"--occlusion_model={saved / 'bagnet.keras'}", "--occlusion_glimpses=2", f"--output_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    occlusion = json.loads((out / "results.json").read_text())["occlusion"]
    assert set(occlusion) == {"judge", "glimpses", "unoccluded", "center"}
