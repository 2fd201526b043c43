"""Run a tool under tcmalloc when the machine has it: TensorFlow's CPU kernels then train 1.6-1.8x faster here.

With glibc's malloc, every tensor above its mmap threshold (32 MB at most; TensorFlow's generator datasets also set
its trim threshold to 128 kB) is mapped and unmapped afresh each step, and the kernel zero-fills its pages on first
touch: a variational saccading training process spent a third of its time in page faults (10.5M of them in 125 s).
tcmalloc keeps freed memory for reuse. `tools/benchmark_malloc.py` measures the ratio; docs/benchmarks.md has it.

`reexec_with_tcmalloc()` restarts the running script (same interpreter, same arguments, same process id) with
tcmalloc in LD_PRELOAD (a library can only be preloaded at process start). It does nothing when tcmalloc is missing
(Debian/Ubuntu: `apt-get install libtcmalloc-minimal4`; `tools/setup_env.sh` installs it where it can), already
loaded, or turned off with SACCADE_ZOO_MALLOC=system. Only the tools' `__main__` blocks call it, never the package.
"""
import glob
import os
import shlex
import sys

ENV_CHOICE = "SACCADE_ZOO_MALLOC"  # "tcmalloc" (default) or "system"
ENV_DONE = "_SACCADE_ZOO_MALLOC_REEXEC"  # set in the restarted process
_PATTERNS = ("/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib64/libtcmalloc_minimal.so.4",
             "/usr/lib/libtcmalloc_minimal.so.4", "/usr/local/lib/libtcmalloc_minimal.so.4")


def find_tcmalloc():
    """Path of libtcmalloc_minimal.so.4 on this machine, or None."""
    for pattern in _PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def preload_environment(environ=None):
    """The variables that put tcmalloc under a process started with `environ` (default: this one's), or {} when it
    is missing, already preloaded or turned off (SACCADE_ZOO_MALLOC=system). An existing LD_PRELOAD is kept."""
    environ = os.environ if environ is None else environ
    preload = environ.get("LD_PRELOAD", "")
    if environ.get(ENV_CHOICE, "tcmalloc") == "system" or "tcmalloc" in preload or not sys.platform.startswith("linux"):
        return {}
    library = find_tcmalloc()
    if library is None:
        return {}
    # tcmalloc reports every allocation above 1 GB on stderr by default; a 2528x2528 batch makes several.
    return {"LD_PRELOAD": f"{library}:{preload}" if preload else library,
            "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": environ.get("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD",
                                                                 str(1 << 40))}


def reexec_with_tcmalloc():
    """Replace this process by the same command under tcmalloc (see the module docstring); returns if it does not."""
    extra = {} if os.environ.get(ENV_DONE) else preload_environment()
    if not extra:
        return
    env = dict(os.environ, **extra)
    env[ENV_DONE] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)


if __name__ == "__main__":
    # No argument: the library's path, or nothing (tools/setup_env.sh, .ci/run). --exports: shell `export` lines
    # of preload_environment() (tools/run_tests.sh evaluates them, so the tests and their subprocesses run under it).
    if sys.argv[1:] == ["--exports"]:
        for name, value in preload_environment().items():
            print(f"export {name}={shlex.quote(value)}")
    else:
        print(find_tcmalloc() or "")
