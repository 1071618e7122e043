"""The examples run as documented."""

import json
import os
import pathlib
import runpy
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.test_multiworker import _free_ports


def test_expectigrad_quickstart(capsys):
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "expectigrad_quickstart.py"
    module = runpy.run_path(str(path))
    accuracy = module["main"](["--epochs", "2"])
    assert 0.0 <= accuracy <= 1.0
    out = capsys.readouterr().out
    assert "optimizer Expectigrad" in out and "steps taken" in out


# ------------------------------------------- examples/train_image_classifier.py

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLASSIFIER = str(ROOT / "examples" / "train_image_classifier.py")
# Two epochs of 22 steps, 8 per compiled call: a call with fewer steps at each
# epoch's end. AM1-SGD option II: evaluated and saved at its average.
CLASSIFIER_ARGS = ["--epochs", "2", "--optimizer", "am1sgd"]


def _start_classifier(args, extra_env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, CLASSIFIER, *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _run_classifier(*args):
    process = _start_classifier(list(args))
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def _saved_weights(model_dir):
    return keras.models.load_model(os.path.join(model_dir, "model.keras")).get_weights()


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("default"))
    code, output = _run_classifier(*CLASSIFIER_ARGS, "--model-dir", model_dir)
    assert code == 0, output[-4000:]
    assert "final test accuracy" in output
    return model_dir


def test_image_classifier_under_mirrored_strategy_matches_one_device(one_device_run, tmp_path):
    code, output = _run_classifier(
        *CLASSIFIER_ARGS, "--strategy", "mirrored", "--logical-cpus", "2", "--model-dir", str(tmp_path)
    )
    assert code == 0, output[-4000:]
    for mirrored, single in zip(_saved_weights(str(tmp_path)), _saved_weights(one_device_run)):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-5)


def test_image_classifier_continues_from_its_checkpoint(one_device_run, tmp_path):
    code, output = _run_classifier("--epochs", "1", "--optimizer", "am1sgd", "--model-dir", str(tmp_path))
    assert code == 0, output[-4000:]
    code, output = _run_classifier(*CLASSIFIER_ARGS, "--model-dir", str(tmp_path))
    assert code == 0, output[-4000:]
    assert "continuing from" in output and "epoch 2:" in output and "epoch 1:" not in output
    for resumed, uninterrupted in zip(_saved_weights(str(tmp_path)), _saved_weights(one_device_run)):
        np.testing.assert_array_equal(resumed, uninterrupted)


@pytest.mark.slow
def test_image_classifier_with_two_workers_matches_one_device(one_device_run, tmp_path):
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    workers = [
        _start_classifier(
            [*CLASSIFIER_ARGS, "--strategy", "multiworker", "--model-dir", str(tmp_path)],
            {"TF_CONFIG": json.dumps(
                {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            )},
        )
        for index in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-4000:]
    for two_workers, single in zip(_saved_weights(str(tmp_path)), _saved_weights(one_device_run)):
        np.testing.assert_allclose(two_workers, single, rtol=1e-4, atol=1e-5)


def test_image_classifier_without_a_tpu_says_so():
    code, output = _run_classifier("--strategy", "tpu", "--epochs", "1")
    assert code != 0
    assert "--strategy=tpu: no TPU found" in output
