"""The convex AM-SGD study (benchmarks/amortized_convex.py) shows what it claims."""

import pathlib
import sys

import numpy as np
import tensorflow as tf

from tests.references.amortized_nesterov import AM1Reference, AM2Reference

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import amortized_convex as study  # noqa: E402


def test_runs_follow_the_reference_on_the_benchmarks_gradients():
    steps = 100
    for method, reference in (
        ("AM1-SGD", AM1Reference(study.MOMENTUM, 5, "II")),
        ("AM2-SGD", AM2Reference(study.MOMENTUM, 5, "II", seed=3)),
    ):
        curves = study.run(method, 5, "high noise", (3,), steps, record_every=50)
        x, expected = [np.zeros(study.DIMENSION)], []
        for k in range(steps):
            g = study.minibatch_gradient(tf.constant(x[0]), 3, tf.constant(k, tf.int64), 4, 1.0)
            x = reference.step(x, [g.numpy()], study.LEARNING_RATE)
            if (k + 1) % 50 == 0:
                expected.append(study.suboptimality(reference.output_point()[0]))
        np.testing.assert_allclose(curves[0], expected, rtol=1e-6)  # η is float32 in Keras


def test_amortization_trades_acceleration_for_variance_control(tmp_path):
    results = study.study(
        seeds=(0, 1), steps=200, amortizations=(1, 20), regimes=("low noise", "heavy noise")
    )
    for method in study.METHODS:
        low = {m: results["low noise", method, m][:, -1].mean() for m in (1, 20)}
        heavy = {m: results["heavy noise", method, m][:, -1].mean() for m in (1, 20)}
        assert low[1] < low[20] / 10  # acceleration: m = 1 is far ahead
        assert heavy[20] < heavy[1] / 2  # variance control: m = 20 is far lower
    text = study.table(results, 200)
    assert "| AM2-SGD | 20 |" in text and "heavy noise: F − F* after 200 steps" in text
    assert "high noise" not in text
    study.plot(results, tmp_path / "curves.png", record_every=50)
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_readme_table_is_what_the_script_prints(tmp_path, monkeypatch, capsys):
    """The README's table has the header and rows (method, m) that the command
    prints with its defaults; the runs (80 s) are replaced by constant curves.
    Only the structure is checked."""
    from tests.harness import committed_tables, printed_tables

    def run(method, m, regime, seeds, steps, record_every=50):
        return np.ones((len(seeds), steps // record_every))

    monkeypatch.setattr(study, "run", run)
    monkeypatch.setattr(study, "plot", lambda *args, **kwargs: None)
    study.main(["--out", str(tmp_path)])
    (committed,) = committed_tables("Amortized Nesterov on stochastic least squares")
    (printed,) = printed_tables(capsys.readouterr().out)
    assert committed.structure(2) == printed.structure(2)
