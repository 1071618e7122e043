"""Expectigrad (Daley & Amato 2020), Section 6, Table 1: IWSLT'15
English→Vietnamese translation with a 4-layer, 1024-unit LSTM and a
Transformer, BLEU on the test set (tst2013), as runner tasks.

The paper trained with tensor2tensor and gives neither the number of steps
nor the batch size; it says the LSTM trained twice as long as the
Transformer and that no step-size annealing was used (constant schedule).
Models and data are in `keras_momenta.compare.translation`; settings the
paper does not give are tensor2tensor's standard hyperparameters ("t2t
default") or ours ("our choice"). BLEU (cased and uncased, greedy decoding)
is computed once, at the end of each run, at the optimizer's answer
(`Task.final_metrics`) and lands in the last history row as `test_bleu` and
`test_bleu_uncased`.

The reduced tasks stand for the same table offline: English digit words to
their Vietnamese words in reverse order, generated in memory, with a small
LSTM encoder-decoder and a small Transformer, scored by the same BLEU code.
Yogi, the paper's fifth method, is not an entry yet.
"""

from keras_momenta.compare import translation as nmt
from keras_momenta.compare.tasks import Task

TRANSLATION_OPTIMIZERS = ("expectigrad", "yogi", "amsgrad", "adafactor", "adam")

IWSLT_DATA = (
    "IWSLT'15 En-Vi from the Stanford NMT project (https://nlp.stanford.edu/projects/nmt/): "
    f"train/tst2012/tst2013 .en/.vi in <data_dir>/{nmt.IWSLT_FOLDER}/ (--data-dir)"
)
# Our choice: the paper and t2t count steps, not epochs (t2t's batches hold
# 4096 tokens, about 100 sentence pairs of IWSLT'15); the LSTM trains twice
# as long as the Transformer (the paper's Section 6).
TRANSFORMER_EPOCHS = 40
LSTM_EPOCHS = 2 * TRANSFORMER_EPOCHS
IWSLT_BATCH = 128  # our choice (t2t: 4096 tokens per batch)
IWSLT_EVALUATION_BATCH = 64


def _iwslt(name):
    def load(data_dir=None):
        return nmt.iwslt15(data_dir, task=name)

    return load


def _iwslt_model(builder):
    def build_model():
        # The vocabulary is learned from the training files, at most t2t's
        # 2^15 tokens: the embeddings have room for every token it learns.
        return getattr(nmt, builder)(nmt.IWSLT_VOCABULARY, nmt.IWSLT_LENGTH)

    return build_model


# The reduced models (our choice): small enough to train in minutes on two CPU cores.
REDUCED_LSTM = {"units": 64, "layers": 2, "dropout": 0.0}
REDUCED_TRANSFORMER = {"hidden": 64, "filter_size": 128, "heads": 4, "layers": 2, "dropout": 0.0}


def _reduced_lstm():
    return nmt.lstm_seq2seq(nmt.SYNTHETIC_VOCABULARY, nmt.SYNTHETIC_LENGTH, **REDUCED_LSTM)


def _reduced_transformer():
    return nmt.transformer(nmt.SYNTHETIC_VOCABULARY, nmt.SYNTHETIC_LENGTH, **REDUCED_TRANSFORMER)


TASKS = [
    Task(
        name="iwslt15_lstm",
        paper="expectigrad",
        stands_for="Expectigrad §6, Table 1 (LSTM)",
        description=(
            "IWSLT'15 En->Vi, LSTM encoder-decoder 4 x 1024 with additive attention, "
            "shared WordPiece vocabulary of 2^15, BLEU (greedy) on tst2013"
        ),
        load=_iwslt("iwslt15_lstm"),
        build_model=_iwslt_model("lstm_seq2seq"),
        epochs=LSTM_EPOCHS,
        batch_size=IWSLT_BATCH,
        optimizers=TRANSLATION_OPTIMIZERS,
        data=IWSLT_DATA,
        selection="val_loss",
        shuffle_buffer=140_000,
        evaluation_batch_size=IWSLT_EVALUATION_BATCH,
        final_metrics=nmt.bleu_scores,
    ),
    Task(
        name="iwslt15_transformer",
        paper="expectigrad",
        stands_for="Expectigrad §6, Table 1 (Transformer)",
        description=(
            "IWSLT'15 En->Vi, Transformer (t2t transformer_base: 6+6 layers, 512/2048, 8 heads), "
            "shared WordPiece vocabulary of 2^15, BLEU (greedy) on tst2013"
        ),
        load=_iwslt("iwslt15_transformer"),
        build_model=_iwslt_model("transformer"),
        epochs=TRANSFORMER_EPOCHS,
        batch_size=IWSLT_BATCH,
        optimizers=TRANSLATION_OPTIMIZERS,
        data=IWSLT_DATA,
        selection="val_loss",
        shuffle_buffer=140_000,
        evaluation_batch_size=IWSLT_EVALUATION_BATCH,
        final_metrics=nmt.bleu_scores,
    ),
    Task(
        name="digits_en_vi_lstm",
        paper="expectigrad",
        stands_for="Expectigrad §6, Table 1 (LSTM), reduced",
        description=(
            "synthetic En->Vi digit words, reversed (4000 pairs, generated), LSTM encoder-decoder "
            "2 x 64 with additive attention, BLEU (greedy) on 300 test pairs"
        ),
        load=nmt.synthetic,
        build_model=_reduced_lstm,
        epochs=30,
        batch_size=64,
        optimizers=TRANSLATION_OPTIMIZERS,
        scale="reduced",
        selection="val_loss",
        final_metrics=nmt.bleu_scores,
    ),
    Task(
        name="digits_en_vi_transformer",
        paper="expectigrad",
        stands_for="Expectigrad §6, Table 1 (Transformer), reduced",
        description=(
            "synthetic En->Vi digit words, reversed (4000 pairs, generated), Transformer "
            "2+2 layers, 64/128, 4 heads, BLEU (greedy) on 300 test pairs"
        ),
        load=nmt.synthetic,
        build_model=_reduced_transformer,
        epochs=10,
        batch_size=64,
        optimizers=TRANSLATION_OPTIMIZERS,
        scale="reduced",
        selection="val_loss",
        final_metrics=nmt.bleu_scores,
    ),
]
