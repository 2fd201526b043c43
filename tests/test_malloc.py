"""tools/_malloc.py: the tools restart themselves under tcmalloc (same process id, same arguments), and not when
told not to; and tools/train.py and tools/evaluate.py do so when run as scripts."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)
import _malloc  # noqa: E402

needs_tcmalloc = pytest.mark.skipif(_malloc.find_tcmalloc() is None,
                                    reason="libtcmalloc_minimal.so.4 not installed (.ci/run installs it)")

# A script that reports, each time it starts, its process id, its arguments and whether tcmalloc is mapped in.
PROBE = f"""
import os, sys
sys.path.insert(0, {TOOLS!r})
with open('/proc/self/maps') as f:
    mapped = 'tcmalloc' in f.read()
print('start', os.getpid(), sys.argv[1:], mapped, flush=True)
import _malloc
_malloc.reexec_with_tcmalloc()
print('running', os.getpid(), sys.argv[1:], mapped, flush=True)
"""


def run_probe(tmp_path, **env_overrides):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", _malloc.ENV_CHOICE, _malloc.ENV_DONE)}
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-X", "utf8", str(script), "--flag=1", "two words"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split(" ", 1) for line in out.strip().splitlines()]


@needs_tcmalloc
def test_restarts_once_under_tcmalloc_with_the_same_pid_and_arguments(tmp_path):
    lines = run_probe(tmp_path)
    assert [kind for kind, _ in lines] == ["start", "start", "running"], lines
    pid = lines[0][1].split()[0]
    args = "['--flag=1', 'two words']"
    assert lines[0][1] == f"{pid} {args} False"  # glibc's malloc before the restart
    assert lines[1][1] == f"{pid} {args} True"  # the same process (exec), now with tcmalloc
    assert lines[2][1] == f"{pid} {args} True"


def test_system_malloc_when_asked(tmp_path):
    lines = run_probe(tmp_path, SACCADE_ZOO_MALLOC="system")
    assert [kind for kind, _ in lines] == ["start", "running"]
    assert lines[1][1].endswith("False")


@needs_tcmalloc
def test_no_second_restart_when_already_preloaded(tmp_path):
    lines = run_probe(tmp_path, LD_PRELOAD=_malloc.find_tcmalloc())
    assert [kind for kind, _ in lines] == ["start", "running"]
    assert lines[1][1].endswith("True")


@needs_tcmalloc
def test_preload_environment_for_run_tests_sh():
    library = _malloc.find_tcmalloc()
    env = _malloc.preload_environment({})
    assert env["LD_PRELOAD"] == library and int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40
    assert _malloc.preload_environment({"LD_PRELOAD": "/x/libother.so"})["LD_PRELOAD"] == f"{library}:/x/libother.so"
    assert _malloc.preload_environment({"SACCADE_ZOO_MALLOC": "system"}) == {}
    assert _malloc.preload_environment({"LD_PRELOAD": library}) == {}
    out = subprocess.run([sys.executable, os.path.join(TOOLS, "_malloc.py"), "--exports"], capture_output=True,
                         text=True, check=True, env={"PATH": os.environ.get("PATH", "")}).stdout
    assert f"export LD_PRELOAD={library}" in out.splitlines()


@pytest.mark.parametrize("tool", ["train.py", "evaluate.py"])
def test_tools_restart_under_tcmalloc_in_their_main_block_only(tool):
    source = open(os.path.join(TOOLS, tool)).read()
    main_block = source[source.index('if __name__ == "__main__":'):]
    assert "_malloc.reexec_with_tcmalloc()" in main_block
    assert main_block.index("reexec_with_tcmalloc") < main_block.index("app.run(main)")
    assert source.count("reexec_with_tcmalloc") == 1  # never at import time (tests load the tools as modules)
