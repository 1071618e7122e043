"""Machine translation for the runner: data, tokenizer, models, greedy decoding, BLEU.

The Expectigrad paper (Daley & Amato 2020, Section 6, Table 1) trains a
4-layer, 1024-unit LSTM and a Transformer on IWSLT'15 English–Vietnamese with
tensor2tensor and reports the test set's BLEU, cased and uncased.
tensor2tensor needs TensorFlow 1, so the models are built here from Keras and
KerasHub layers (`keras_hub.layers.TransformerEncoder/Decoder`,
`ReversibleEmbedding`, `SinePositionEncoding`), the subword vocabulary is a
KerasHub WordPiece vocabulary learned from the training files only, and BLEU
is sacrebleu's corpus BLEU-4 with its "intl" tokenization (the tokenization of
tensor2tensor's `t2t-bleu`, which also reports cased and uncased scores).

Where the paper gives no setting, the models follow tensor2tensor's standard
hyperparameters for that model ("t2t default"); what differs from
tensor2tensor is marked "our choice" (a fixed padded length instead of
length-bucketed batches of 4096 tokens, greedy decoding instead of beam
search, no label smoothing, attention over the decoder stack's output
instead of tensor2tensor's attention-wrapper with input feeding).

Examples are ((source ids, target-in ids), target-out ids), padded with 0
to a fixed length; target-in is `[START] y` and target-out is `y [END]`. The
models' output carries the mask `target-in != 0`, so Keras's
sparse categorical cross-entropy and accuracy count real tokens only.
"""

import dataclasses
import functools
import random

import keras
import numpy as np
import tensorflow as tf

from keras_momenta.compare import data

PAD, UNK, START, END = "[PAD]", "[UNK]", "[START]", "[END]"
RESERVED_TOKENS = (PAD, UNK, START, END)  # ids 0, 1, 2, 3

# IWSLT'15 En–Vi as the Stanford NMT project distributes it (Luong & Manning 2015).
IWSLT_FOLDER = "iwslt15_en_vi"
IWSLT_FILES = {
    "train": ("train.en", "train.vi"),
    "validation": ("tst2012.en", "tst2012.vi"),
    "test": ("tst2013.en", "tst2013.vi"),
}
IWSLT_HOW = (
    "download train.en, train.vi, tst2012.en, tst2012.vi, tst2013.en and tst2013.vi from "
    f"https://nlp.stanford.edu/projects/nmt/ (IWSLT'15 English-Vietnamese) into <data_dir>/{IWSLT_FOLDER}/"
)
# t2t's translate_envi_iwslt32k: one subword vocabulary of 2^15 for both languages.
IWSLT_VOCABULARY = 2**15
# Our choice: every example padded to this many subwords (t2t batches by
# length instead); longer training pairs are dropped, as t2t's `max_length`
# drops them; longer evaluation pairs are cut.
IWSLT_LENGTH = 128


@dataclasses.dataclass(frozen=True)
class TranslationSplits(data.Splits):
    """`data.Splits` with what BLEU needs: the tokenizer and the test set's
    reference translations (text), in the order of the test examples."""

    tokenizer: object = None
    test_references: tuple = ()
    max_length: int = 0


# ---------------------------------------------------------------- tokenizer


def learn_vocabulary(lines, size):
    """A WordPiece vocabulary (list of tokens, reserved tokens first) learned
    from `lines` (both languages), at most `size` tokens; cased and accents
    kept. The same lines give the same vocabulary."""
    from keras_hub.tokenizers import compute_word_piece_vocabulary

    vocabulary = compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(tf.constant(list(lines), tf.string)).batch(1000),
        vocabulary_size=size,
        lowercase=False,
        strip_accents=False,
        reserved_tokens=list(RESERVED_TOKENS),
    )
    # The learner's size is approximate: never more than `size` (the models'
    # embedding size); the last tokens are the rarest word pieces.
    return list(vocabulary)[:size]


def make_tokenizer(vocabulary):
    from keras_hub.tokenizers import WordPieceTokenizer

    return WordPieceTokenizer(vocabulary=list(vocabulary), lowercase=False, strip_accents=False)


def encode(tokenizer, lines, length, drop_long=False):
    """(ids [n, length], keep [n]) of `lines`: each line's subword ids and
    [END], padded with 0; lines longer than `length` are cut, and marked False
    in `keep` when `drop_long`."""
    end = tokenizer.token_to_id(END)
    rows = [list(row) + [end] for row in _as_lists(tokenizer(tf.constant(list(lines), tf.string)))]
    lengths = np.array([len(row) for row in rows], np.int64)
    keep = lengths <= length if drop_long else np.ones(len(rows), bool)
    dense = np.zeros((len(rows), length), np.int32)
    for k, row in enumerate(rows):
        dense[k, : min(len(row), length)] = row[:length]
    return dense, keep


def _as_lists(ids):
    """Rows of token ids as lists (the tokenizer gives lists eagerly, ragged
    tensors in graphs)."""
    if isinstance(ids, tf.RaggedTensor):
        return ids.to_list()
    return [list(row) for row in ids]


def examples(tokenizer, sources, targets, length, drop_long=False):
    """((source ids, target-in ids), target-out ids) arrays of a parallel corpus."""
    source, keep_source = encode(tokenizer, sources, length, drop_long)
    target_out, keep_target = encode(tokenizer, targets, length, drop_long)
    # The last token is [END] unless the line was cut; target-in is [START] y.
    start = tokenizer.token_to_id(START)
    end = tokenizer.token_to_id(END)
    target_in = np.where(target_out == end, 0, target_out)
    target_in = np.concatenate([np.full((len(target_in), 1), start, np.int32), target_in[:, :-1]], 1)
    keep = keep_source & keep_target
    return (source[keep], target_in[keep]), target_out[keep]


def corpus_splits(tokenizer, corpora, length):
    """`TranslationSplits` from {"train"|"validation"|"test": (sources, targets)} of text."""
    datasets, train_examples = {}, 0
    for split, (sources, targets) in corpora.items():
        features, labels = examples(tokenizer, sources, targets, length, drop_long=split == "train")
        datasets[split] = tf.data.Dataset.from_tensor_slices((features, labels))
        if split == "train":
            train_examples = len(labels)
    if not train_examples:
        raise ValueError(f"No training pair is {length} subwords long or less.")
    return TranslationSplits(
        train=datasets["train"], validation=datasets["validation"], test=datasets["test"],
        train_examples=train_examples, tokenizer=tokenizer,
        test_references=tuple(corpora["test"][1]), max_length=length,
    )


# ---------------------------------------------------------------- data


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").strip() for line in f]


def iwslt_corpora(data_dir, task="iwslt15"):
    """{split: (English lines, Vietnamese lines)} read from `<data_dir>/iwslt15_en_vi/`."""
    corpora = {}
    for split, names in IWSLT_FILES.items():
        sources, targets = (
            read_lines(data.text_file(data_dir, f"{IWSLT_FOLDER}/{name}", task, IWSLT_HOW))
            for name in names
        )
        if len(sources) != len(targets):
            raise ValueError(f"{names[0]} and {names[1]} have {len(sources)} and {len(targets)} lines.")
        corpora[split] = (sources, targets)
    return corpora


def iwslt15(data_dir=None, task="iwslt15"):
    """IWSLT'15 En→Vi: train, tst2012 (validation), tst2013 (test); one WordPiece
    vocabulary of at most `IWSLT_VOCABULARY` learned from train.en + train.vi;
    examples of `IWSLT_LENGTH`."""
    corpora = iwslt_corpora(data_dir, task)
    vocabulary = _vocabulary_of(tuple(corpora["train"][0] + corpora["train"][1]), IWSLT_VOCABULARY)
    return corpus_splits(make_tokenizer(vocabulary), corpora, IWSLT_LENGTH)


@functools.lru_cache(maxsize=2)
def _vocabulary_of(lines, size):
    return tuple(learn_vocabulary(lines, size))


# The synthetic task of the reduced version: English digit words to their
# Vietnamese words in reverse order ("one two" → "hai một").
DIGITS_EN = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_VI = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
SYNTHETIC_VOCABULARY = 128  # room for every word whole
SYNTHETIC_SIZES = {"train": 4000, "validation": 300, "test": 300}
SYNTHETIC_LENGTH = 12  # up to 10 words and [END]


def synthetic_corpora(sizes=None, lengths=(3, 10), seed=0):
    """{split: (English lines, Vietnamese lines)}: random digit-word sentences
    and their reversed word-by-word translation, generated from `seed`."""
    generator = random.Random(seed)
    corpora = {}
    for split, size in (sizes or SYNTHETIC_SIZES).items():
        sources, targets = [], []
        for _ in range(size):
            digits = [generator.randrange(10) for _ in range(generator.randint(*lengths))]
            sources.append(" ".join(DIGITS_EN[d] for d in digits))
            targets.append(" ".join(DIGITS_VI[d] for d in reversed(digits)))
        corpora[split] = (sources, targets)
    return corpora


def synthetic(data_dir=None, sizes=None):
    del data_dir  # generated, never read
    corpora = synthetic_corpora(sizes)
    vocabulary = _vocabulary_of(tuple(corpora["train"][0] + corpora["train"][1]), SYNTHETIC_VOCABULARY)
    return corpus_splits(make_tokenizer(vocabulary), corpora, SYNTHETIC_LENGTH)


# ---------------------------------------------------------------- models


@keras.saving.register_keras_serializable(package="keras_momenta")
class TargetMask(keras.layers.Layer):
    """Softmax of the logits, masked where target-in is padding: Keras's loss
    and metrics then average over real tokens only."""

    def call(self, inputs):
        logits, _ = inputs
        return keras.ops.softmax(keras.ops.cast(logits, "float32"), axis=-1)

    def compute_mask(self, inputs, mask=None):
        return keras.ops.not_equal(inputs[1], 0)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def _inputs(length):
    return (
        keras.Input((length,), dtype="int32", name="source"),
        keras.Input((length,), dtype="int32", name="target_in"),
    )


def lstm_seq2seq(vocabulary_size, length, units=1024, layers=4, dropout=0.2, name="lstm_seq2seq"):
    """LSTM encoder-decoder with attention (t2t's `lstm_seq2seq_attention`):
    `layers` LSTM layers of `units` in the encoder and the decoder (the paper's
    4 × 1024), embeddings of `units` (t2t default), dropout 0.2 between layers
    (t2t default), the decoder starting from the encoder's final states.
    Attention (additive, Bahdanau's scores, t2t default) of the top decoder
    layer over the top encoder layer, combined by a tanh layer before the
    softmax (our choice: t2t feeds the attention back into the decoder)."""
    source, target_in = _inputs(length)
    source_mask = keras.ops.not_equal(source, 0)
    x = keras.layers.Embedding(vocabulary_size, units, name="source_embedding")(source)
    states = []
    for k in range(layers):
        x = keras.layers.Dropout(dropout)(x)
        x, h, c = keras.layers.LSTM(units, return_sequences=True, return_state=True, name=f"encoder_lstm_{k}")(
            x, mask=source_mask
        )
        states.append([h, c])
    encoded = x
    y = keras.layers.Embedding(vocabulary_size, units, name="target_embedding")(target_in)
    for k in range(layers):
        y = keras.layers.Dropout(dropout)(y)
        y = keras.layers.LSTM(units, return_sequences=True, name=f"decoder_lstm_{k}")(y, initial_state=states[k])
    context = keras.layers.AdditiveAttention(name="attention")(
        [y, encoded], mask=[None, source_mask]
    )
    y = keras.layers.Concatenate()([y, context])
    y = keras.layers.Dense(units, activation="tanh", name="attention_output")(y)
    y = keras.layers.Dropout(dropout)(y)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(y)
    return keras.Model([source, target_in], TargetMask()([logits, target_in]), name=name)


def transformer(vocabulary_size, length, hidden=512, filter_size=2048, heads=8, layers=6,
                dropout=0.1, name="transformer"):
    """Transformer (Vaswani et al. 2017) with t2t's `transformer_base`
    hyperparameters (t2t default): 6 encoder and 6 decoder layers, hidden 512,
    filter 2048, 8 heads, dropout 0.1, layer normalisation before each
    sub-layer and after each stack, sinusoidal positions, embeddings × √hidden,
    one embedding matrix for source, target and softmax (t2t's shared
    vocabulary with `shared_embedding_and_softmax_weights`)."""
    from keras_hub.layers import (
        ReversibleEmbedding,
        SinePositionEncoding,
        TransformerDecoder,
        TransformerEncoder,
    )

    source, target_in = _inputs(length)
    source_mask = keras.ops.not_equal(source, 0)
    target_mask = keras.ops.not_equal(target_in, 0)
    embedding = ReversibleEmbedding(
        vocabulary_size, hidden, tie_weights=True, name="shared_embedding",
        embeddings_initializer=keras.initializers.RandomNormal(stddev=hidden**-0.5),
    )
    positions = SinePositionEncoding()

    def embed(ids):
        x = embedding(ids) * (hidden**0.5)
        return keras.layers.Dropout(dropout)(x + positions(x))

    x = embed(source)
    for k in range(layers):
        x = TransformerEncoder(filter_size, heads, dropout=dropout, normalize_first=True, name=f"encoder_{k}")(
            x, padding_mask=source_mask
        )
    encoded = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")(x)
    y = embed(target_in)
    for k in range(layers):
        y = TransformerDecoder(filter_size, heads, dropout=dropout, normalize_first=True, name=f"decoder_{k}")(
            y, encoded, decoder_padding_mask=target_mask, encoder_padding_mask=source_mask
        )
    y = keras.layers.LayerNormalization(epsilon=1e-6, name="decoder_norm")(y)
    logits = embedding(y, reverse=True)
    return keras.Model([source, target_in], TargetMask()([logits, target_in]), name=name)


# ---------------------------------------------------------------- decoding and BLEU


def greedy_decode(model, source, start_id, end_id, max_length=None, vocabulary_size=None):
    """Greedy decoding of a batch of source ids [n, length] by a model of
    (source, target-in) → probabilities: one forward pass per output position
    (a fixed shape, so one trace); stops when every line has ended. Returns
    the output ids [n, ≤ length], without [START], 0 after [END]. Only ids
    below `vocabulary_size` are chosen (the model's softmax may be larger
    than the vocabulary learned)."""
    source = np.asarray(source, np.int32)
    n, length = source.shape
    steps = min(max_length or length, length)
    target = np.zeros((n, length), np.int32)
    target[:, 0] = start_id
    ended = np.zeros(n, bool)
    output = np.zeros((n, steps), np.int32)
    predict = _predictor(model)
    for t in range(steps):
        probabilities = predict(source, target)
        token = np.asarray(probabilities[:, t, :vocabulary_size]).argmax(-1).astype(np.int32)
        token[ended] = 0
        output[:, t] = token
        ended |= token == end_id
        if ended.all():
            break
        if t + 1 < length:
            target[:, t + 1] = token
    return output


def _predictor(model):
    @tf.function(reduce_retracing=True)
    def predict(source, target):
        return model([source, target], training=False)

    return lambda source, target: predict(tf.constant(source), tf.constant(target)).numpy()


def ids_to_text(tokenizer, ids):
    """Lines of text of output ids (up to [END]; reserved tokens dropped)."""
    end = tokenizer.token_to_id(END)
    reserved = {tokenizer.token_to_id(token) for token in RESERVED_TOKENS}
    lines = []
    for row in np.asarray(ids):
        row = list(row)
        if end in row:
            row = row[: row.index(end)]
        row = [int(token) for token in row if int(token) not in reserved]
        lines.append(_join_wordpieces([tokenizer.id_to_token(token) for token in row]))
    return lines


def _join_wordpieces(tokens):
    words = []
    for token in tokens:
        if token.startswith("##") and words:
            words[-1] += token[2:]
        else:
            words.append(token)
    return " ".join(words)


def translate(model, tokenizer, source, batch_size=64):
    """Greedy translations (text) of source ids [n, length], in order."""
    start, end = tokenizer.token_to_id(START), tokenizer.token_to_id(END)
    lines = []
    for first in range(0, len(source), batch_size):
        ids = greedy_decode(
            model, source[first : first + batch_size], start, end,
            vocabulary_size=tokenizer.vocabulary_size(),
        )
        lines += ids_to_text(tokenizer, ids)
    return lines


def bleu(hypotheses, references, lowercase=False):
    """Corpus BLEU-4 with brevity penalty (Papineni et al. 2002) in percent,
    sacrebleu's, with the "intl" tokenization of t2t-bleu."""
    import sacrebleu

    return sacrebleu.corpus_bleu(
        list(hypotheses), [list(references)], tokenize="intl", lowercase=lowercase
    ).score


def bleu_scores(model, splits, batch_size=64):
    """{"test_bleu", "test_bleu_uncased"} of greedy translations of the test set."""
    source = np.concatenate([np.asarray(features[0]) for features, _ in splits.test.batch(4096)])
    hypotheses = translate(model, splits.tokenizer, source, batch_size)
    references = splits.test_references
    return {
        "test_bleu": bleu(hypotheses, references),
        "test_bleu_uncased": bleu(hypotheses, references, lowercase=True),
    }
