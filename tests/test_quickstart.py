"""README's quick start, reduced: tools/train.py through all three steps on a few hundred shipped sample images
must end with a useful model, not merely exit 0. (A green suite once hid a quick start whose location
pretraining diverged and left a chance-level model.) Also: a diverging stage stops loudly, keeps its last good
checkpoint, writes no model, and a rerun with a lower learning rate restarts that stage."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The quick start's recipe (all three steps at their default epochs, rates and batch) on about half its data.
REDUCED = ["--train_examples=1600", "--test_examples=500", "--checkpoint_every=0", "--eval_glimpses=6",
           "--eval_policies=random", "--verbose=2", "--validation_examples=200"]


def run_train(out_dir, *flags):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train.py"), f"--output_dir={out_dir}", *REDUCED, *flags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)


def history(out_dir, stage):
    with open(os.path.join(out_dir, stage, "history.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_reduced_quick_start_trains_a_useful_model(tmp_path):
    out = str(tmp_path / "run")
    done = run_train(out, "--seed=0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-2000:]
    for stage, key in (("representation", "loss"), ("location", "loss"), ("policy", "ce")):
        curve = history(out, stage)
        for name, values in curve.items():
            assert all(math.isfinite(v) for v in values), (stage, name, values)
        assert curve[key][-1] < curve[key][0], (stage, key, curve[key])
    location = history(out, "location")
    assert location["val_location_accuracy"][-1] > 0.25, location  # 12 ranked targets among 81 cells
    results = json.load(open(os.path.join(out, "results.json")))
    learned = results["policies"]["learned"]["accuracy"][5]
    random = results["policies"]["random"]["accuracy"][5]
    assert learned > 0.35, results  # 10 classes: chance is 0.10
    assert learned > random + 0.1, results
