"""Restart a pytest-xdist worker whose memory has grown too large.

TensorFlow keeps every graph a `tf.function` traced (and XLA every program it
compiled) until its process ends, a few megabytes for each model a test
trains: a CI run's two workers grew to 11 and 13 GiB of the machine's 24 and
spent the rest of the run waiting on the kernel's page reclaim. So a worker
whose resident memory passes `limit_bytes()` exits just before its next test
starts; xdist starts a fresh worker, and the controller puts that test back in
the queue. It shows as "rescheduled" in the summary, never as a failure.
A conftest registers this module as a plugin from its `pytest_configure`.

Crash handling is left as it was: a test that had started when its worker
died is the crash's test (pytest-rerunfailures may rerun it; otherwise it
fails).
"""

import os
import sys

import pytest

RESCHEDULED = "rescheduled"

# Tests begun and not ended, as the controller sees them.
_running = set()


def limit_bytes():
    """`KM_WORKER_MEMORY_GB`, or half the machine's memory shared by the workers."""
    if "KM_WORKER_MEMORY_GB" in os.environ:
        return float(os.environ["KM_WORKER_MEMORY_GB"]) * 2**30
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return _machine_bytes() / (2 * workers)


def _machine_bytes():
    """Physical memory, or the container's limit where that is lower."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as limit:
                limits.append(int(limit.read()))
        except (OSError, ValueError):  # absent, or "max"
            pass
    return min(limits)


def _resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pytest_configure(config):
    # Each restart counts against xdist's limit (four per worker by default).
    if getattr(config.option, "maxworkerrestart", "") is None:
        config.option.maxworkerrestart = "64"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and os.path.exists("/proc/self/statm"):
        resident = _resident_bytes()
        if resident > limit_bytes():
            sys.stderr.write(
                f"\n[{worker}] {resident / 2**30:.1f} GiB resident: restarting before "
                f"{item.nodeid}\n"
            )
            sys.stderr.flush()
            os._exit(0)
    return (yield)


def pytest_runtest_logstart(nodeid, location):
    _running.add(nodeid)


def pytest_runtest_logreport(report):
    if report.when in ("teardown", "???"):
        _running.discard(report.nodeid)


@pytest.hookimpl(optionalhook=True, trylast=True)
def pytest_handlecrashitem(crashitem, report, sched):
    """A test its worker never started goes back in the queue."""
    if crashitem in _running or report.outcome == "rerun":
        return
    sched.mark_test_pending(crashitem)
    report.outcome = RESCHEDULED


def pytest_report_teststatus(report, config):
    if report.outcome == RESCHEDULED:
        return RESCHEDULED, "", "RESCHEDULED (its worker restarted first)"
