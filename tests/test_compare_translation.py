"""The runner's translation tasks (Expectigrad §6, Table 1): data, tokenizer,
BLEU, models, greedy decoding and the `Task.final_metrics` hook."""

import dataclasses
import functools
import io
import json

import keras
import numpy as np
import pytest

from keras_momenta.compare import TASKS, MissingDataError, run_comparison
from keras_momenta.compare import translation as nmt
from keras_momenta.compare.runner import read_history
from keras_momenta.compare.tasks import translation as reduced
from keras_momenta.compare.tasks.translation import TRANSLATION_OPTIMIZERS

IWSLT_TASKS = ("iwslt15_lstm", "iwslt15_transformer")
REDUCED_TASKS = ("digits_en_vi_lstm", "digits_en_vi_transformer")

# A few lines in the shape of the Stanford files (tokenised, HTML entities).
FAKE_EN = [
    "Rachel Pike : The science behind a climate headline",
    "In 4 minutes , atmospheric chemist Rachel Pike provides a glimpse .",
    "I &apos;d like to talk to you today about the scale of the scientific effort .",
    "Headlines that look like this when they have to do with climate change .",
]
FAKE_VI = [
    "Khoa học đằng sau một tiêu đề về khí hậu",
    "Trong 4 phút , chuyên gia hoá học khí quyển Rachel Pike giới thiệu sơ lược .",
    "Tôi muốn cho các bạn biết về sự to lớn của những nỗ lực khoa học .",
    "Có những dòng trông như thế này khi bàn về biến đổi khí hậu .",
]


def write_fake_iwslt(root, train_repeats=4):
    folder = root / nmt.IWSLT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, (en, vi) in nmt.IWSLT_FILES.items():
        repeats = train_repeats if split == "train" else 1
        (folder / en).write_text("\n".join(FAKE_EN * repeats) + "\n", encoding="utf-8")
        (folder / vi).write_text("\n".join(FAKE_VI * repeats) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def small_iwslt(monkeypatch, tmp_path):
    """Fake IWSLT files, and the IWSLT tasks' models and lengths made small."""
    monkeypatch.setattr(nmt, "IWSLT_VOCABULARY", 256)
    monkeypatch.setattr(nmt, "IWSLT_LENGTH", 64)
    monkeypatch.setattr(nmt, "lstm_seq2seq", functools.partial(nmt.lstm_seq2seq, units=8, layers=1))
    monkeypatch.setattr(
        nmt, "transformer",
        functools.partial(nmt.transformer, hidden=8, filter_size=8, heads=1, layers=1),
    )
    return write_fake_iwslt(tmp_path / "data")


# ------------------------------------------------------------ BLEU


def test_bleu_identical_is_100_and_no_overlap_is_0():
    lines = ["the cat sat on the mat", "a quick brown fox jumps"]
    assert nmt.bleu(lines, lines) == pytest.approx(100.0)
    assert nmt.bleu(["xx yy zz ww vv", "qq rr ss tt uu"], lines) == 0.0


def test_bleu_partial_matches_hand_computation():
    # A shorter hypothesis, every n-gram matching: BLEU is the brevity penalty
    # exp(1 - r/c) (r = 6 reference words, c = 5 hypothesis words).
    hypothesis = ["the cat sat on the"]  # 5 words
    reference = ["the cat sat on the mat"]  # 6 words
    expected = 100 * np.exp(1 - 6 / 5)
    assert nmt.bleu(hypothesis, reference) == pytest.approx(expected, rel=1e-9)
    # p1 = 6/7, p2 = 4/6, p3 = 3/5, p4 = 2/4; no brevity penalty (c = 7 > r = 6).
    hypothesis = ["the cat sat on a big mat"]
    reference = ["the cat sat on a mat"]
    expected = 100 * np.exp(np.mean(np.log([6 / 7, 4 / 6, 3 / 5, 2 / 4])))
    assert nmt.bleu(hypothesis, reference) == pytest.approx(expected, rel=1e-9)


def test_bleu_cased_and_uncased():
    assert nmt.bleu(["The Cat sat on the mat"], ["the cat sat on the mat"]) < 60
    assert nmt.bleu(["The Cat sat on the mat"], ["the cat sat on the mat"], lowercase=True) == pytest.approx(100)


# ------------------------------------------------------------ data and tokenizer


def test_vocabulary_is_deterministic_and_from_training_files_only(tmp_path):
    root = write_fake_iwslt(tmp_path)
    lines = (FAKE_EN + FAKE_VI) * 4
    first = nmt.learn_vocabulary(lines, 256)
    assert first == nmt.learn_vocabulary(lines, 256)
    assert first[:4] == list(nmt.RESERVED_TOKENS)
    # Frequent words whole, cased, accents kept.
    assert {"Rachel", "khí", "học"} <= set(first) and "rachel" not in first and "khi" not in first
    assert len(nmt.learn_vocabulary(lines, 40)) == 40  # never above the size asked for

    nmt._vocabulary_of.cache_clear()
    splits = nmt.iwslt15(str(root))
    vocabulary = splits.tokenizer.get_vocabulary()
    # Another test set, same training files: the same vocabulary.
    (root / nmt.IWSLT_FOLDER / "tst2013.en").write_text("zebra quagga okapi\n" * 4, encoding="utf-8")
    (root / nmt.IWSLT_FOLDER / "tst2013.vi").write_text("ngựa vằn\n" * 4, encoding="utf-8")
    nmt._vocabulary_of.cache_clear()
    again = nmt.iwslt15(str(root))
    assert again.tokenizer.get_vocabulary() == vocabulary
    assert "zebra" not in vocabulary and "quagga" not in vocabulary
    assert again.test_references == ("ngựa vằn",) * 4


def test_examples_are_shifted_padded_and_ended():
    corpora = nmt.synthetic_corpora({"train": 50, "validation": 5, "test": 5})
    assert corpora == nmt.synthetic_corpora({"train": 50, "validation": 5, "test": 5})
    tokenizer = nmt.make_tokenizer(nmt.learn_vocabulary(corpora["train"][0] + corpora["train"][1], 128))
    (source, target_in), target_out = nmt.examples(tokenizer, ["one two three"], ["ba hai một"], 6)
    start, end = tokenizer.token_to_id(nmt.START), tokenizer.token_to_id(nmt.END)
    words = [tokenizer.token_to_id(w) for w in ("one", "two", "three", "ba", "hai", "một")]
    assert source.tolist() == [words[:3] + [end, 0, 0]]
    assert target_out.tolist() == [words[3:] + [end, 0, 0]]
    assert target_in.tolist() == [[start] + words[3:] + [0, 0]]
    assert nmt.ids_to_text(tokenizer, target_out) == ["ba hai một"]
    # Too long: dropped from training data, cut elsewhere.
    (source, _), _ = nmt.examples(tokenizer, ["one two three"], ["ba hai một"], 3, drop_long=True)
    assert len(source) == 0
    (source, _), _ = nmt.examples(tokenizer, ["one two three"], ["ba hai một"], 3)
    assert source.tolist() == [words[:3]]


def test_synthetic_task_is_reversed_word_translation():
    (sources, targets) = nmt.synthetic_corpora({"train": 20})["train"]
    for source, target in zip(sources, targets):
        digits = [nmt.DIGITS_EN.index(w) for w in source.split()]
        assert target.split() == [nmt.DIGITS_VI[d] for d in reversed(digits)]
        assert 3 <= len(digits) <= 10


def test_missing_files_raise_missing_data_error(tmp_path):
    with pytest.raises(MissingDataError, match="nlp.stanford.edu/projects/nmt"):
        nmt.iwslt15(None)
    with pytest.raises(MissingDataError, match="train.en") as error:
        nmt.iwslt15(str(tmp_path))
    assert "tst2013.vi" in str(error.value) and "nlp.stanford.edu/projects/nmt" in str(error.value)
    root = write_fake_iwslt(tmp_path)
    (root / nmt.IWSLT_FOLDER / "tst2012.vi").unlink()
    with pytest.raises(MissingDataError, match="tst2012.vi"):
        nmt.iwslt15(str(root))


# ------------------------------------------------------------ models


def _layers(model, kind):
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, kind)]


def test_full_lstm_is_4_layers_of_1024(monkeypatch):
    # A smaller vocabulary than 2^15 (the paper gives none): 4 × 1024 builds faster.
    monkeypatch.setattr(nmt, "IWSLT_VOCABULARY", 1000)
    model = TASKS["iwslt15_lstm"].build_model()
    lstms = _layers(model, keras.layers.LSTM)
    assert sorted(layer.name for layer in lstms) == sorted(
        [f"encoder_lstm_{k}" for k in range(4)] + [f"decoder_lstm_{k}" for k in range(4)]
    )
    assert {layer.units for layer in lstms} == {1024}
    assert model.output_shape == (None, nmt.IWSLT_LENGTH, 1000)
    # LSTM 4 × 1024 per side: 8 × 4 × (2 × 1024 + 1) × 1024 weights.
    lstm_weights = sum(layer.count_params() for layer in lstms)
    assert lstm_weights == 8 * 4 * (2 * 1024 + 1) * 1024
    assert len(_layers(model, keras.layers.AdditiveAttention)) == 1


def test_full_transformer_is_transformer_base():
    from keras_hub.layers import TransformerDecoder, TransformerEncoder

    model = TASKS["iwslt15_transformer"].build_model()
    encoders, decoders = _layers(model, TransformerEncoder), _layers(model, TransformerDecoder)
    assert len(encoders) == len(decoders) == 6
    for layer in encoders + decoders:
        assert (layer.intermediate_dim, layer.num_heads, layer.dropout) == (2048, 8, 0.1)
        assert layer.normalize_first
    assert model.output_shape == (None, nmt.IWSLT_LENGTH, nmt.IWSLT_VOCABULARY)
    # One embedding matrix for source, target and softmax.
    embeddings = [w for w in model.weights if "embeddings" in w.path]
    assert [tuple(w.shape) for w in embeddings] == [(nmt.IWSLT_VOCABULARY, 512)]
    # transformer_base with a 2^15 vocabulary: 44.1M encoder-decoder + 16.8M embedding.
    assert 60e6 < model.count_params() < 62e6


def test_loss_and_accuracy_skip_padding():
    model = nmt.transformer(32, 6, hidden=8, filter_size=8, heads=1, layers=1, dropout=0.0)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    source = np.array([[5, 6, 3, 0, 0, 0]], np.int32)
    target_in = np.array([[2, 7, 0, 0, 0, 0]], np.int32)
    target_out = np.array([[7, 3, 0, 0, 0, 0]], np.int32)
    probabilities = model.predict([source, target_in], verbose=0)[0]
    expected = -np.mean(np.log([probabilities[0, 7], probabilities[1, 3]]))
    loss = model.evaluate([source, target_in], target_out, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------ runner


def _check_run(out, names, final=True):
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["run"]["entry"] for r in results["runs"]) == sorted(names)
    for record in results["runs"]:
        (row,) = record["history"]
        assert np.isfinite(row["loss"]) and np.isfinite(row["val_loss"])
        if final:
            assert 0.0 <= row["test_bleu"] <= 100.0 and 0.0 <= row["test_bleu_uncased"] <= 100.0


# Each run traces its model afresh (10-20 s on two shared cores): the default
# suite runs each task with Expectigrad, the slow suite with every entry.
ENTRY_SETS = [
    pytest.param(("expectigrad",), id="expectigrad"),
    pytest.param(TRANSLATION_OPTIMIZERS, id="every_entry", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("entries", ENTRY_SETS)
@pytest.mark.parametrize("name", IWSLT_TASKS)
def test_iwslt_task_runs_on_fake_files(name, entries, small_iwslt, tmp_path):
    # The pipeline (models made small: their structure is checked above).
    nmt._vocabulary_of.cache_clear()
    task = TASKS[name]
    assert task.optimizers == TRANSLATION_OPTIMIZERS and task.selection == "val_loss"
    assert task.scale == "full" and "Table 1" in task.stands_for
    out = run_comparison(
        task=name, optimizers=entries, seeds=(0,), epochs=1, batch_size=16, out_dir=tmp_path,
        jit_compile=False, stream=io.StringIO(), data_dir=str(small_iwslt),
    )
    _check_run(out, entries)


@pytest.mark.parametrize("entries", ENTRY_SETS)
@pytest.mark.parametrize("name", REDUCED_TASKS)
def test_reduced_task_runs(name, entries, monkeypatch, tmp_path):
    # A few generated pairs and one-layer models: the pipeline.
    monkeypatch.setattr(nmt, "SYNTHETIC_SIZES", {"train": 32, "validation": 8, "test": 8})
    monkeypatch.setitem(reduced.REDUCED_LSTM, "layers", 1)
    monkeypatch.setitem(reduced.REDUCED_LSTM, "units", 8)
    monkeypatch.setitem(reduced.REDUCED_TRANSFORMER, "layers", 1)
    task = TASKS[name]
    assert task.scale == "reduced" and task.optimizers == TRANSLATION_OPTIMIZERS
    out = run_comparison(
        task=name, optimizers=entries, seeds=(0,), epochs=1, batch_size=32, out_dir=tmp_path,
        jit_compile=False, stream=io.StringIO(),
    )
    _check_run(out, entries)


def test_reduced_models_are_small():
    lstm = TASKS["digits_en_vi_lstm"].build_model()
    assert [layer.units for layer in _layers(lstm, keras.layers.LSTM)] == [64] * 4
    assert lstm.count_params() < 300_000
    assert TASKS["digits_en_vi_transformer"].build_model().count_params() < 300_000


def test_final_metrics_join_the_last_row_only(monkeypatch, tmp_path):
    calls = []

    def final_metrics(model, splits):
        calls.append(splits.train_examples)
        return {"test_answer": 42.0}

    task = TASKS["mnist1d_mlp"]
    assert task.final_metrics is None
    monkeypatch.setitem(TASKS, task.name, dataclasses.replace(task, final_metrics=final_metrics))
    settings = dict(
        task=task.name, optimizers=["adam"], seeds=(0,), epochs=2, batch_size=1000,
        out_dir=tmp_path, jit_compile=False, stream=io.StringIO(),
    )
    run_comparison(**settings)
    assert len(calls) == 1
    (history_csv,) = (tmp_path / "runs").glob("adam/*/history.csv")
    rows = read_history(history_csv)
    assert "test_answer" not in rows[0] and rows[1]["test_answer"] == 42.0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["runs"][0]["history"][-1]["test_answer"] == 42.0
    # A finished run is read back (with the first row's empty cell), not trained again.
    run_comparison(**settings)
    assert len(calls) == 1


# ------------------------------------------------------------ trained model


@pytest.mark.heavy
def test_greedy_decoding_of_trained_reduced_transformer_reaches_high_bleu():
    keras.utils.set_random_seed(0)
    splits = nmt.synthetic()
    model = TASKS["digits_en_vi_transformer"].build_model()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(splits.train.shuffle(4000, seed=0).batch(64), epochs=6, verbose=0)
    scores = nmt.bleu_scores(model, splits)
    assert scores["test_bleu"] > 90, scores
    before = nmt.bleu_scores(TASKS["digits_en_vi_transformer"].build_model(), splits)
    assert before["test_bleu"] < 10, before
