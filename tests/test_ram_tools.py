"""RAM and DRAM through the tools: tools/train.py runs their one declared stage with its own defaults,
tools/evaluate.py reads accuracy vs glimpses as the contract's "last" aggregation says (beyond the trained count
too), tools/export.py exports with parity."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import saccade_zoo  # noqa: F401  (registers the classes for load_model)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--train_examples=64", "--test_examples=32", "--batch_size=16", "--epochs=1", "--checkpoint_every=0",
         "--verbose=0", "--validation_examples=16"]


def tool(name, *flags):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *flags], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_ram_and_dram_train_evaluate_and_export_through_the_tools(tmp_path):
    ram = tool("train.py", f"--output_dir={tmp_path}/ram", "--preset=ram_cluttered100", "--glimpses=3",
               "--eval_glimpses=5", "--reinforce_weight=0.05", "--step_loss=all", *SMALL)
    assert ram.returncode == 0, ram.stderr[-3000:]
    assert "stage 1/1: reinforce" in ram.stdout
    settings = json.load(open(tmp_path / "ram" / "reinforce" / "settings.json"))
    assert settings["optimizer"] == "adam" and settings["clipnorm"] == 5.0
    assert settings["compile_options"]["reinforce_weight"] == 0.05
    assert settings["compile_options"]["step_loss"] == "all"
    history = json.load(open(tmp_path / "ram" / "reinforce" / "history.json"))
    assert {"ce", "reinforce", "baseline", "reward"} <= set(history)
    results = json.load(open(tmp_path / "ram" / "results.json"))
    assert set(results["policies"]) == {"learned"} and len(results["policies"]["learned"]["accuracy"]) == 5

    # tools/evaluate.py: accuracy after t glimpses is step t's own prediction (aggregation "last"), also past T = 3.
    path = str(tmp_path / "ram" / "model.keras")
    evaluated = tool("evaluate.py", f"--model={path}", "--test_examples=32", "--glimpses=5",
                     f"--output_dir={tmp_path}/eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.load(open(tmp_path / "eval" / "results.json"))
    accuracy = report["policies"]["learned"]["accuracy"]
    model = keras.models.load_model(path)
    from saccade_zoo.data.cluttered import ClutteredConfig, cluttered_split

    test = cluttered_split("test", "sample", 32, ClutteredConfig(), seed=1, verbose=0)
    step_logits = np.asarray(model.with_glimpses(5).predict(test["images"], verbose=0)["step_logits"])
    np.testing.assert_allclose(accuracy, (step_logits.argmax(-1) == test["labels"][:, None]).mean(0), atol=1e-6)

    dram = tool("train.py", f"--output_dir={tmp_path}/dram", "--preset=dram_cluttered100_identify", "--glimpses=2",
                "--eval_glimpses=2", *SMALL)
    assert dram.returncode == 0, dram.stderr[-3000:]
    assert "exact-match accuracy" in dram.stdout
    path = str(tmp_path / "dram" / "model.keras")
    exported = tool("export.py", f"--model={path}", f"--out_dir={tmp_path}/export", "--variants=float32",
                    "--num_images=8", "--num_calibration_images=8")
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-3000:]
    manifest = json.load(open(tmp_path / "export" / "manifest.json"))
    contract = manifest["model"]["contract"]
    assert contract["aggregation"] == "last" and contract["activation"] == "sigmoid"
    assert manifest["parity"]["results"]["tflite_float32"]["max_abs_locations_px"] < 1e-2
