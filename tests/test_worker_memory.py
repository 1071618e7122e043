"""tests/worker_memory.py: a worker over its memory limit restarts between
tests and its next test still runs once; a test that crashes still fails."""

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

CONFTEST = """
from tests import worker_memory


def pytest_configure(config):
    config.pluginmanager.register(worker_memory, "worker_memory")
"""

TESTS = """
import os
import pathlib

_held = []


def test_grows_past_the_limit():
    _held.append(bytearray(400 * 2**20))
    _held[-1][:: 4096] = b"x" * len(_held[-1][:: 4096])


def test_after_it():
    pathlib.Path(os.environ["RUNS"], "after_it").open("a").write("ran\\n")


def test_last():
    pathlib.Path(os.environ["RUNS"], "last").open("a").write("ran\\n")
"""

CRASH = """
import os


def test_crashes():
    os._exit(3)


def test_after_the_crash():
    pass
"""


def _pytest(directory, runs):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KM_WORKER_MEMORY_GB": "0.3", "RUNS": str(runs)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "1", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-o", "addopts=", str(directory)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300,
    )


def _suite(tmp_path, tests):
    directory = tmp_path / "suite"
    directory.mkdir()
    (directory / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (directory / "test_suite.py").write_text(textwrap.dedent(tests))
    return directory


def test_a_worker_over_its_limit_restarts_and_its_next_test_runs_once(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    completed = _pytest(_suite(tmp_path, TESTS), runs)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert "3 passed, 1 rescheduled" in output, output[-4000:]
    assert "GiB resident: restarting before test_suite.py::test_after_it" in output
    assert (runs / "after_it").read_text() == "ran\n"
    assert (runs / "last").read_text() == "ran\n"


def test_a_test_that_crashes_its_worker_still_fails(tmp_path):
    completed = _pytest(_suite(tmp_path, CRASH), tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-4000:]
    assert "1 failed, 1 passed" in output, output[-4000:]
    assert "crashed while running 'test_suite.py::test_crashes'" in output
