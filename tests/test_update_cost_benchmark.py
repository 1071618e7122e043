"""The performance benchmark (benchmarks/update_cost.py) measures what it says."""

import json
import pathlib
import sys

import keras
import numpy as np
import pytest

import keras_momenta as km

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import update_cost  # noqa: E402


@pytest.mark.parametrize("total", [10_000, 1_000_000, 4_000_000])
def test_realistic_shapes_add_up(total):
    shapes = update_cost.realistic_shapes(total)
    assert sum(int(np.prod(s)) for s in shapes) == total
    assert any(len(s) == 4 for s in shapes) and any(len(s) == 2 for s in shapes)


def test_state_copies_count_slots_only():
    variables = [keras.Variable(np.zeros((10, 10))), keras.Variable(np.zeros(50))]
    adam = keras.optimizers.Adam()
    adam.build(variables)
    assert update_cost.state_copies(adam) == 2 * 150
    igt = km.IGT(keras.optimizers.SGD(0.1, momentum=0.9))
    igt.build(variables)
    assert update_cost.state_copies(igt) == 3 * 150  # v, θ, momentum


def test_every_package_optimizer_is_benchmarked():
    benchmarked = set()
    for entry in update_cost.ENTRIES:
        optimizer = entry.make()
        benchmarked |= {type(optimizer), type(getattr(optimizer, "inner_optimizer", optimizer))}
    assert set(km.OPTIMIZERS.values()) <= benchmarked


# The sizes of the README's run (`update_cost.py`'s default --sizes).
README_SIZES = ("1M", "4M", "16M", "64M")


def _assert_update_table_matches(committed, printed):
    """The README's update table (four sizes) against a 0.01M run's: the same
    header, and for each size the optimizers in the same order."""
    names = printed.column(1)
    assert printed.labels == ("0.01M",) * len(names)
    assert committed.header == printed.header
    assert committed.labels == tuple(size for size in README_SIZES for _ in names)
    assert committed.column(1) == names * len(README_SIZES)


def test_tables_are_written(tmp_path, monkeypatch):
    """The tables, and that benchmarks/README.md's tables have the structure
    that they print: header cells and row labels. The training is replaced by
    fixed rates (its table's structure does not depend on them). The README's
    second table under "Update cost, no XLA" (AM1-SGD, columns of two runs side
    by side) is written by hand and not checked."""
    from tests.harness import committed_tables, printed_tables, table_under

    def training_throughput(entries, build_model, steps, batch_size=128, rounds=5):
        return {entry.name: 1.0 + i for i, entry in enumerate(entries)}

    monkeypatch.setattr(update_cost, "training_throughput", training_throughput)
    update_cost.main(["--sizes", "0.01", "--repeats", "2", "--out", str(tmp_path)])
    text = (tmp_path / "update_cost.md").read_text()
    for entry in update_cost.ENTRIES:
        assert f"| 0.01M | {entry.name} |" in text
        assert f"| {entry.name} | {entry.passes:g} |" in text
    assert "| keras Adam | 7 | 2.00 | 2 |" in text

    printed = printed_tables(text)
    for heading in ("Update cost, XLA", "Update cost, no XLA"):
        (committed,) = committed_tables(heading)
        _assert_update_table_matches(committed, table_under(printed, heading))
    # One size has no scaling exponent: the run's timings at a second size.
    timings = json.loads((tmp_path / "update_cost.json").read_text())["timings"]
    scaling = update_cost.scaling_table({n: p + [[4 * t, 4 * s] for t, s in p] for n, p in timings.items()})
    (committed,) = committed_tables("Scaling (XLA)")
    assert committed.structure() == printed_tables(scaling)[0].structure()
    for heading in ("Optimizer state", "Training throughput"):
        (committed,) = committed_tables(heading)
        assert committed.structure(2) == table_under(printed, heading).structure(2)
    # JAX: the same training table (`test_tables_on_jax` runs without training).
    (committed,) = committed_tables("Training throughput, JAX")
    assert committed.structure(2) == table_under(printed, "Training throughput").structure(2)


def test_large_sizes_time_each_optimizer_beside_the_baselines(tmp_path):
    entries = update_cost.ENTRIES
    assert update_cost.timing_groups(entries, 10, max_interleaved=100) == [entries]
    groups = update_cost.timing_groups(entries, 1000, max_interleaved=100)
    baselines = [e for e in entries if e.baseline]
    assert [g[-1] for g in groups] == [e for e in entries if not e.baseline]
    assert all(g[:-1] == baselines for g in groups)

    update_cost.main(
        ["--sizes", "0.01", "--repeats", "2", "--no-training", "--out", str(tmp_path),
         "--max-interleaved", "0.001", "--optimizers", "IGT(SGD)", "M-SSD"]
    )
    text = (tmp_path / "update_cost.md").read_text()
    assert "At 0.01M each package optimizer ran beside the Keras baselines" in text
    assert "| 0.01M | IGT(SGD) |" in text and "| 0.01M | M-SSD |" in text


def test_scaling_exponent_is_fitted():
    timings = {"linear": [(1e6, 1e-3), (4e6, 4e-3), (16e6, 16e-3)], "flat": [(1e6, 1.0), (4e6, 1.0)]}
    table = update_cost.scaling_table(timings)
    assert "| linear | 1.00 |" in table and "| flat | 0.00 |" in table


def test_training_throughput_times_every_entry():
    entries = [e for e in update_cost.ENTRIES if e.name in ("keras Adam", "IGT(SGD)")]
    rates = update_cost.training_throughput(entries, update_cost.mlp, steps=2, batch_size=8, rounds=2)
    assert set(rates) == {"keras Adam", "IGT(SGD)"} and all(r > 0 for r in rates.values())
    table = update_cost.throughput_table({"MLP": rates})
    assert "| MLP | keras Adam |" in table and "| 1.00 |" in table


def test_tables_on_jax(tmp_path):
    import os
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "update_cost.py"), "--sizes", "0.01",
         "--repeats", "2", "--no-training", "--out", str(tmp_path)],
        cwd=root, env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    text = (tmp_path / "update_cost.md").read_text()
    assert "jax backend, JAX" in text
    for entry in update_cost.ENTRIES:
        assert f"| 0.01M | {entry.name} |" in text
    assert "no XLA" not in text  # JAX always compiles

    # benchmarks/README.md's JAX tables have the structure that this prints.
    from tests.harness import committed_tables, printed_tables, table_under

    printed = printed_tables(text)
    (committed,) = committed_tables("Update cost, XLA, JAX")
    _assert_update_table_matches(committed, table_under(printed, "Update cost, XLA"))
    (committed,) = committed_tables("Optimizer state, JAX")
    assert committed.structure(2) == table_under(printed, "Optimizer state").structure(2)
