"""Test setup: oneDNN off (it segfaults on tiny strided convs, see BUILD.md), quiet TF, fixed seeds."""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests (still run in CI)")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


# The longest test files, longest first (CI's --durations, clean clone of 1566d83). run_tests.sh hands whole files to
# two workers in collection order (--dist loadfile --no-loadscope-reorder); xdist's default order (most tests first)
# started the one-test, 8-minute quick-start file last, leaving one worker idle at the end.
LONGEST_FIRST = ("test_quickstart.py", "test_train_tool.py", "test_distributed.py", "test_export.py", "test_guard.py",
                 "test_evaluate_tool.py", "test_training.py", "test_registry.py", "test_ram_tools.py", "test_ram.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))  # stable: files stay whole
