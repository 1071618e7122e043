"""The Reddi-problem benchmark (benchmarks/reddi.py) shows what it claims."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import reddi  # noqa: E402


def test_steps_to_reach_counts_from_the_last_crossing():
    assert reddi.steps_to_reach(np.array([0.0, -1.5, 0.2, -1.0, -2.0])) == 4
    assert reddi.steps_to_reach(np.array([-1.0, -2.0])) == 1
    assert reddi.steps_to_reach(np.array([0.0, -2.0, 0.5])) is None


def test_gradient_sequences_follow_reddi_section_5():
    online = reddi.gradients("online", 303)
    assert online[0] == 1010 and online[101] == 1010 and online[202] == 1010
    assert np.sum(online == 1010) == 3 and np.all(online[online != 1010] == -10)
    stochastic = reddi.gradients("stochastic", 100_000, seed=1)
    assert abs(np.mean(stochastic == 1010) - 0.01) < 0.002
    with pytest.raises(ValueError, match="problem"):
        reddi.gradients("offline", 10)


def test_expectigrad_reaches_minus_one_and_adam_goes_the_wrong_way():
    results = reddi.run(1_000_000, seeds=(0, 1, 2), names=["Adam", "Expectigrad"])
    (expectigrad,), (adam,) = results["online", "Expectigrad"], results["online", "Adam"]
    assert reddi.steps_to_reach(expectigrad) is not None
    assert reddi.steps_to_reach(adam) is None and adam[-1] > 1.0
    # The stochastic problem's expected gradient is only +0.2 per step, so
    # single runs are noisy: compare the seeds' final points.
    stochastic = {name: [xs[-1] for xs in results["stochastic", name]] for name in ("Adam", "Expectigrad")}
    assert np.mean(stochastic["Expectigrad"]) < -1.0
    assert min(stochastic["Adam"]) > 1.0
    table = reddi.table(results, 1_000_000)
    assert "| Adam | never |" in table


def test_readme_table_is_what_the_script_prints():
    """benchmarks/README.md's table has the header and rows that `reddi.table`
    prints (every method, a 10-step run: the README's is 10⁶ steps). The
    section's second table, steps per step size α, puts cells of three runs
    together by hand and is not checked."""
    from tests.harness import committed_tables, printed_tables

    (committed,) = committed_tables("Reddi problem")
    (printed,) = printed_tables(reddi.table(reddi.run(10, seeds=(0,)), 10))
    assert committed.replace(("1,000,000", "10")).structure() == printed.structure()
