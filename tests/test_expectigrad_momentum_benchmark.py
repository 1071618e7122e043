"""Expectigrad's momentum ablation (benchmarks/expectigrad_momentum.py, the
paper's Figure 2 left) on a short reduced run."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import expectigrad_momentum  # noqa: E402


def test_forms_agree_without_momentum_and_bias_correction_matters_near_one():
    betas = (0.0, 0.99)
    results = expectigrad_momentum.run("mnist1d_mlp", betas=betas, seeds=(0,))
    at_zero = {results[form, 0.0][0] for form in expectigrad_momentum.FORMS}
    assert len(at_zero) == 1  # β = 0: no momentum, one update
    # Without bias correction the first steps are (1 − β) as long: after one
    # epoch the uncorrected form is clearly behind.
    inner, corrected, outer = (results[form, 0.99][0] for form in expectigrad_momentum.FORMS)
    assert inner > 1.05 * max(corrected, outer)
    table = expectigrad_momentum.table(results, betas).splitlines()
    assert table[0] == "| β | inner | inner_bias_corrected | outer |"
    assert table[3].startswith("| 0.99 | ") and table[3].count("±") == 3


def test_readme_table_is_what_the_script_wrote():
    """The README's table is the committed results file, cell for cell, and has
    the header and rows (every β of the command) that `table` prints."""
    from tests.harness import committed_tables, printed_tables

    (committed,) = committed_tables("Expectigrad's momentum forms")
    results_file = (
        pathlib.Path(__file__).resolve().parents[1]
        / "benchmarks/results/tasks/expectigrad_momentum/expectigrad_momentum_mnist1d_mlp.md"
    )
    (written,) = printed_tables(results_file.read_text())
    assert committed.header == written.header and committed.rows == written.rows
    constant = {(form, beta): [1.0] for form in expectigrad_momentum.FORMS for beta in expectigrad_momentum.BETAS}
    (printed,) = printed_tables(expectigrad_momentum.table(constant, expectigrad_momentum.BETAS))
    assert committed.structure() == printed.structure()
