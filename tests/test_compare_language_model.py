"""The LSTM language models, NT-ASGD and the PTB / character LM tasks
(AM-SGD paper §6.3, after Merity et al. 2018)."""

import io
import json
import math

import keras
import numpy as np
import pytest

import keras_momenta as km
from keras_momenta.compare import TASKS, language_model, run_comparison
from keras_momenta.compare import optimizers as entries
from keras_momenta.compare.data import MissingDataError
from keras_momenta.compare.language_model import NTASGD, NonMonotoneTrigger
from keras_momenta.compare.tasks.amortized_nesterov import LANGUAGE_MODEL_OPTIMIZERS

LEAD_ENTRIES = {name: entries.OPTIMIZERS[name] for name in LANGUAGE_MODEL_OPTIMIZERS}


def test_task_lists_the_papers_methods_and_settings():
    task = TASKS["ptb_lstm"]
    assert set(task.optimizers) == set(LEAD_ENTRIES) == set(LANGUAGE_MODEL_OPTIMIZERS)
    assert (task.batch_size, task.epochs, task.schedule) == (20, 500, "constant")
    assert task.metrics == ("perplexity",) and task.selection == "val_loss" and not task.maximise
    assert LEAD_ENTRIES["nt_asgd"].learning_rate == 30.0
    assert {LEAD_ENTRIES[n].learning_rate for n in LANGUAGE_MODEL_OPTIMIZERS[1:]} == {2.5}
    for name in LANGUAGE_MODEL_OPTIMIZERS:
        optimizer = LEAD_ENTRIES[name].build(1.0)
        assert optimizer.global_clipnorm == 0.25
        if name != "nt_asgd":
            assert optimizer.momentum == 0.99
    am = LEAD_ENTRIES["am2_sgd_lm"].build(1.0)
    assert (am.amortization, am.option) == (5, "II")


def test_awd_lstm_structure():
    model = language_model.awd_lstm_ptb()
    assert [lstm.units for lstm in model.lstms] == [1150, 1150, 400]
    assert model.embed.embeddings.shape == (10_000, 400)
    assert [d.rate for d in model.hidden_dropouts] == [0.25, 0.25]
    assert (model.input_dropout.rate, model.output_dropout.rate, model.embed.word_dropout) == (0.4, 0.4, 0.1)
    assert {lstm.recurrent_dropout for lstm in model.lstms} == {0.5}
    # Tied weights: embedding and softmax share one matrix; AWD-LSTM's PTB model
    # has 24.2M weights (3 LSTMs + 4M embedding + 10k output bias).
    lstm_weights = sum(4 * (n * (i + n) + n) for i, n in ((400, 1150), (1150, 1150), (1150, 400)))
    assert model.count_params() == lstm_weights + 10_000 * 400 + 10_000 + 2
    logits = model(np.zeros((2, 70), np.int32))
    assert logits.shape == (2, 70, 10_000)


def test_ptb_reads_local_files_and_says_what_is_missing(tmp_path):
    with pytest.raises(MissingDataError, match="--data-dir"):
        language_model.ptb(None)
    with pytest.raises(MissingDataError, match="ptb.train.txt"):
        language_model.ptb(str(tmp_path))
    _fake_ptb(tmp_path, lines=40)
    splits = language_model.ptb(str(tmp_path))
    inputs, targets = next(iter(splits.train.batch(2)))
    assert inputs.shape == targets.shape == (2, 70)
    # Targets are the inputs shifted by one token.
    np.testing.assert_array_equal(inputs.numpy()[0, 1:], targets.numpy()[0, :-1])
    # <eos> closes every line; the validation's unseen word is <unk>.
    ids = language_model.vocabulary(language_model.words(tmp_path / "ptb" / "ptb.train.txt"), 10_000)
    assert "<eos>" in ids
    valid = language_model.encode(["never_seen"], ids)
    assert valid[0] == ids["<unk>"]


def _fake_ptb(root, lines=40, seed=0):
    rng = np.random.default_rng(seed)
    vocabulary = ["<unk>", "n", "the"] + [f"w{i}" for i in range(50)]
    folder = root / "ptb"
    folder.mkdir(exist_ok=True)
    for name, count in (("ptb.train.txt", lines), ("ptb.valid.txt", lines // 4), ("ptb.test.txt", lines // 4)):
        text = "\n".join(" " + " ".join(rng.choice(vocabulary, 20)) + " " for _ in range(count))
        (folder / name).write_text(text + "\n")


def _averaged_sgd_reference(x0, gradient, rate, epochs_losses, steps_per_epoch, nonmonotone):
    """NumPy NT-ASGD: SGD; after each epoch, the switch test on the list of
    earlier losses (Merity et al.'s `val_loss > min(losses[:-n])`); after the
    switch, the answer is the mean of the iterates since."""
    x, losses, switched_at, iterates, step = x0.copy(), [], None, [], 0
    answers = []
    for loss in epochs_losses:
        for _ in range(steps_per_epoch):
            x = x - rate * gradient(x)
            step += 1
            if switched_at is not None:
                iterates.append(x.copy())
        if switched_at is None and len(losses) > nonmonotone and loss > min(losses[:-nonmonotone]):
            switched_at = step
        losses.append(loss)
        answers.append(np.mean(iterates, axis=0) if iterates else x.copy())
    return switched_at, answers


def test_ntasgd_switches_on_the_non_monotone_trigger_and_averages():
    """Against the NumPy reference on f(x) = ½‖Ax − b‖², with a hand-made
    sequence of 'validation losses': the switch comes after the first epoch
    whose loss is worse than the best of all but the last 3."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=6)
    gradient = lambda x: a.T @ (a @ x - b)  # noqa: E731
    losses = [5.0, 4.0, 3.0, 3.5, 3.4, 3.3, 2.9, 3.2, 3.1, 3.0]
    x0 = rng.normal(size=4)
    rate, steps, n = 2.0**-6, 3, 3  # exact in float32 (the step size is kept in float32)
    switched_at, answers = _averaged_sgd_reference(x0, gradient, rate, losses, steps, n)
    assert switched_at is not None and switched_at < steps * len(losses)

    variable = keras.Variable(x0.astype(np.float64), dtype="float64")
    optimizer = NTASGD(rate, nonmonotone=n)
    optimizer.build([variable])
    for epoch, loss in enumerate(losses):
        for _ in range(steps):
            optimizer.apply([gradient(np.asarray(variable.numpy()))], [variable])
        optimizer.observe_validation_loss(loss)
        (answer,) = optimizer.evaluation_weights([variable])
        np.testing.assert_allclose(np.asarray(answer), answers[epoch], rtol=1e-12, err_msg=f"epoch {epoch}")
    assert int(optimizer.switched_at.numpy()) == switched_at
    # The training point is plain SGD all along.
    x = x0.copy()
    for _ in range(steps * len(losses)):
        x = x - rate * gradient(x)
    np.testing.assert_allclose(variable.numpy(), x, rtol=1e-12)


def test_ntasgd_does_not_switch_while_losses_decrease():
    variable = keras.Variable(np.ones(3, np.float32))
    optimizer = NTASGD(0.1, nonmonotone=2)
    optimizer.build([variable])
    for loss in (5, 4, 3, 2, 1):
        assert not optimizer.observe_validation_loss(loss)
    assert not optimizer.averaging
    assert optimizer.observe_validation_loss(4.5)  # worse than min(5, 4, 3)
    assert optimizer.averaging


def test_trigger_and_average_through_fit():
    """In `fit` the trigger reads `val_loss`; evaluation after the switch is
    at the average (the runner's `SwapEvaluationWeights`)."""
    keras.utils.set_random_seed(0)
    x = np.random.normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = NTASGD(0.05, nonmonotone=1)
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.build(model.trainable_variables)
    optimizer.observe_validation_loss(-1.0)  # so the next epoch's loss triggers
    optimizer.observe_validation_loss(0.0)
    history = model.fit(
        x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y),
        callbacks=[NonMonotoneTrigger(), km.callbacks.SwapEvaluationWeights()],
    )
    assert optimizer.averaging and int(optimizer.switched_at.numpy()) == 4
    assert len(history.history["val_loss"]) == 2


TINY = dict(embedding=4, hidden=(8, 8))


@pytest.mark.parametrize(
    "task_name, names",
    [
        # Every entry through the LM code path (at a tiny size: tracing three
        # LSTMs per entry dominates the time); the PTB reader with one entry.
        ("characters_lstm", LANGUAGE_MODEL_OPTIMIZERS[-1:]),
        pytest.param("characters_lstm", LANGUAGE_MODEL_OPTIMIZERS, marks=pytest.mark.slow),
        ("ptb_lstm", ("nt_asgd",)),
        pytest.param("ptb_lstm", LANGUAGE_MODEL_OPTIMIZERS, marks=pytest.mark.slow),
    ],
)
def test_language_model_tasks_run_and_report_perplexity(task_name, names, tmp_path, monkeypatch):
    data_dir = None
    if task_name == "ptb_lstm":
        _fake_ptb(tmp_path, lines=16)
        data_dir = str(tmp_path)
        monkeypatch.setattr(language_model, "PTB_MODEL", dict(language_model.PTB_MODEL, **TINY))
    else:
        monkeypatch.setattr(language_model, "CHARACTER_TEXT_BYTES", 4_000)
        monkeypatch.setattr(language_model, "CHARACTER_MODEL", dict(language_model.CHARACTER_MODEL, **TINY))
    out = tmp_path / "out"
    run_comparison(
        task=task_name, optimizers=names, seeds=(0,), epochs=1, batch_size=16,
        out_dir=out, jit_compile=False, stream=io.StringIO(), data_dir=data_dir,
    )
    results = json.loads((out / "results.json").read_text())
    assert {r["run"]["entry"] for r in results["runs"]} == set(names)
    for record in results["runs"]:
        (row,) = record["history"]
        for split in ("val_", "test_"):
            # Perplexity is exp(cross-entropy); the loss adds only the tiny L2 term.
            assert row[f"{split}perplexity"] == pytest.approx(math.exp(row[f"{split}loss"]), rel=1e-2)
        assert 1.0 < row["test_perplexity"] < 1e5
    assert "test perplexity" in (out / "summary.md").read_text()


def test_character_text_is_offline_and_deterministic():
    first, second = language_model.offline_text(), language_model.offline_text()
    assert len(first) == language_model.CHARACTER_TEXT_BYTES
    np.testing.assert_array_equal(first, second)
    splits = language_model.characters()
    assert splits.train_examples == int(len(first) * 0.8 - 1) // 100


@pytest.mark.heavy
def test_ptb_full_awd_lstm_runs_every_entry(tmp_path):
    _fake_ptb(tmp_path, lines=20)
    run_comparison(
        task="ptb_lstm", optimizers=LANGUAGE_MODEL_OPTIMIZERS, seeds=(0,), epochs=1, batch_size=4,
        out_dir=tmp_path / "out", jit_compile=False, stream=io.StringIO(), data_dir=str(tmp_path),
    )
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results["runs"]) == len(LANGUAGE_MODEL_OPTIMIZERS)
