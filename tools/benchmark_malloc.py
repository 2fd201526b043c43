"""Benchmark: `tools/train.py` under glibc's malloc vs tcmalloc (what the tools use by default where installed).

Runs the same short training command twice per case, once with SACCADE_ZOO_MALLOC=system and once under tcmalloc
(tools/_malloc.py), each in a fresh subprocess on a fresh output folder, alternating the order between cases, and
reports per run the training time train.py measured (its stages, without data generation and evaluation), the
process's wall time, user and system CPU time, minor page faults and peak RSS (the child's own rusage); then the
ratios system / tcmalloc. Same seed, same data. oneDNN is as TF_ENABLE_ONEDNN_OPTS says (TensorFlow's default: on;
the tests turn it off).

    python tools/benchmark_malloc.py                       # three cases on the shipped sample, ~15 min on 2 cores
    python tools/benchmark_malloc.py --cases=variational --cores=0

Needs libtcmalloc_minimal.so.4 (Debian/Ubuntu: apt-get install libtcmalloc-minimal4).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _malloc  # noqa: E402  (tools/_malloc.py)

FLAGS = flags.FLAGS
_COMMON = ["--data=sample", "--seed=0", "--checkpoint_every=0", "--verbose=0", "--eval_policies=random"]
CASES = {
    # README's quick start, one epoch per step on 800 canvases.
    "saccader": ["--preset=saccader_cluttered100", "--train_examples=800", "--test_examples=200", "--epochs=1",
                 "--eval_glimpses=6"],
    # Variational saccading, two-item identification (issue 12's model), 1,600 canvases x 1 epoch.
    "variational": ["--preset=variational_cluttered100_identify", "--train_examples=1600", "--test_examples=200",
                    "--validation_examples=0", "--epochs=1", "--eval_glimpses=4"],
    # The full-image ResNet-18 baseline, 640 canvases x 1 epoch.
    "resnet18": ["--preset=resnet18_cluttered100_identify", "--train_examples=640", "--test_examples=200",
                 "--validation_examples=0", "--epochs=1"],
}
flags.DEFINE_list("cases", list(CASES), f"Which cases to run: {', '.join(CASES)}.")
flags.DEFINE_string("cores", None, "Pin every run to these CPU cores (taskset list, e.g. '0'); default: all.")
flags.DEFINE_string("out_json", None, "Also write the results here as JSON.")

_TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")


def run_measured(case, allocator, workdir):
    """One run with the child's own resource usage (os.wait4), not the accumulated RUSAGE_CHILDREN."""
    out_dir = os.path.join(workdir, f"{case}_{allocator}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")  # TF_ENABLE_ONEDNN_OPTS as given (TensorFlow's default: on)
    env[_malloc.ENV_CHOICE] = allocator
    env.pop(_malloc.ENV_DONE, None)
    # A preloaded tcmalloc (e.g. this script started from tools/run_tests.sh's environment) would be inherited by
    # the "system" run too: drop it; train.py preloads it again itself for the tcmalloc run.
    preload = [p for p in env.pop("LD_PRELOAD", "").split(":") if p and "tcmalloc" not in p]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    command = [sys.executable, _TRAIN, *_COMMON, *CASES[case], f"--output_dir={out_dir}"]
    if FLAGS.cores:
        command = ["taskset", "-c", FLAGS.cores, *command]
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        code = process.returncode = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{case} under {allocator} failed (exit {code}):\n{err.read()[-3000:]}")
    with open(os.path.join(out_dir, "results.json")) as f:
        results = json.load(f)
    return dict(train_seconds=results["train_seconds"], wall_seconds=round(wall, 1),
                user_seconds=round(usage.ru_utime, 1), system_seconds=round(usage.ru_stime, 1),
                page_faults=usage.ru_minflt, peak_rss_mb=round(usage.ru_maxrss / 1024.0))


def main(argv):
    del argv
    if _malloc.find_tcmalloc() is None:
        raise app.UsageError("tcmalloc not found (libtcmalloc_minimal.so.4): apt-get install libtcmalloc-minimal4")
    unknown = sorted(set(FLAGS.cases) - set(CASES))
    if unknown:
        raise app.UsageError(f"unknown case(s) {unknown}; choose from {sorted(CASES)}")
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")
    print(f"oneDNN {'on' if onednn else 'off (TF_ENABLE_ONEDNN_OPTS=0)'}; tcmalloc: {_malloc.find_tcmalloc()}")
    workdir = tempfile.mkdtemp(prefix="benchmark_malloc_")
    rows = {}
    try:
        for i, case in enumerate(FLAGS.cases):
            order = ("system", "tcmalloc") if i % 2 == 0 else ("tcmalloc", "system")
            rows[case] = {}
            for allocator in order:
                print(f"{case}: training under {allocator} ...", flush=True)
                rows[case][allocator] = run_measured(case, allocator, workdir)
            s, t = rows[case]["system"], rows[case]["tcmalloc"]
            rows[case]["ratio_train"] = round(s["train_seconds"] / t["train_seconds"], 2)
            rows[case]["ratio_wall"] = round(s["wall_seconds"] / t["wall_seconds"], 2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = ("case", "malloc", "train s", "wall s", "user s", "sys s", "page faults", "peak RSS MB")
    print("\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for case, row in rows.items():
        for allocator in ("system", "tcmalloc"):
            r = row[allocator]
            print(f"| {case} | {allocator} | {r['train_seconds']} | {r['wall_seconds']} | {r['user_seconds']} | "
                  f"{r['system_seconds']} | {r['page_faults']:,} | {r['peak_rss_mb']} |")
    print()
    for case, row in rows.items():
        print(f"{case}: system / tcmalloc = {row['ratio_train']}x training time, {row['ratio_wall']}x wall time")
    if FLAGS.out_json:
        with open(FLAGS.out_json, "w") as f:
            json.dump(dict(cases=rows, cores=FLAGS.cores, tcmalloc=_malloc.find_tcmalloc(), onednn=onednn), f,
                      indent=1)


if __name__ == "__main__":
    app.run(main)
