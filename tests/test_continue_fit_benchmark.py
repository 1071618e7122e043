"""Continuing training in pieces (benchmarks/continue_fit.py): its README table."""

import pathlib
import sys

import numpy as np

from tests.harness import committed_tables, printed_tables

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import continue_fit  # noqa: E402


def test_readme_table_is_what_the_script_prints(monkeypatch, capsys):
    """The README's table has the header and the rows (every optimizer of the
    command, in order) that the command prints; the training (a minute) is
    replaced by a constant loss."""
    monkeypatch.setattr(continue_fit, "train", lambda *args, **kwargs: (1.0, [np.zeros(1)]))
    continue_fit.main([])
    (committed,) = committed_tables("Continuing training")
    (printed,) = printed_tables(capsys.readouterr().out)
    assert committed.structure() == printed.structure()
