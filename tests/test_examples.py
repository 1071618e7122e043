"""The examples run as documented."""

import pathlib
import runpy


def test_expectigrad_quickstart(capsys):
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "expectigrad_quickstart.py"
    module = runpy.run_path(str(path))
    accuracy = module["main"](["--epochs", "2"])
    assert 0.0 <= accuracy <= 1.0
    out = capsys.readouterr().out
    assert "optimizer Expectigrad" in out and "steps taken" in out
