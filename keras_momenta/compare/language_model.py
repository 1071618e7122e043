"""Word- and character-level LSTM language models and the NT-ASGD baseline.

The AM-SGD paper (Zhou et al. 2020, §6.3) trains "the LSTM model defined in
Merity et al. (2018)" (AWD-LSTM) on Penn Treebank "following the set-up of
its released code", changing only the optimizer; its baseline is SGD that
switches to averaged SGD on a non-monotone trigger (NT-ASGD) at a constant
step size 30, and M-SGD / AM1-SGD / AM2-SGD run at η = 2.5, β = 0.99 with the
step size halved when the validation loss has not decreased for 15 epochs.

AWD-LSTM's PTB setting, as its released code runs it: a 3-layer LSTM (1150,
1150, 400 units) over 400-dimensional embeddings tied to the softmax weights,
vocabulary 10,000, batch 20, BPTT 70, 500 epochs, gradient norm clipped at
0.25, weight decay 1.2e-6, activation regularisation α = 2 and temporal
activation regularisation β = 1, and dropouts: 0.4 on the embedded input,
0.25 between LSTM layers, 0.4 on the output, 0.1 word (embedding-row)
dropout and DropConnect 0.5 on the hidden-to-hidden weights.

What is simplified here (marked "substitute" below):
- DropConnect on the recurrent weights (the weight-dropped LSTM) is replaced
  by Keras's `recurrent_dropout` (variational dropout on the recurrent
  state, Gal & Ghahramani 2016) at the same rate.
- Training sequences are fixed, non-overlapping windows of 70 tokens, each
  starting from a zero state and shuffled per epoch, instead of one stream
  per batch row carried across batches with a random BPTT length
  (N(70, 5), 5% of batches at 35) and a matching step-size scaling; the
  runner's batches are shuffled and stateless. Evaluation is over the same
  windows (also from a zero state), so perplexities are somewhat higher
  than with AWD-LSTM's carried-state evaluation.
- Weight decay is an L2 penalty on the embeddings and the LSTM kernels
  (not the biases); AWD-LSTM's fine-tuning stage and its pointer cache are
  left out.
"""

import collections
import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_momenta import _backend
from keras_momenta._base import state_dtype
from keras_momenta.compare import data
from keras_momenta.compare.models import l2_regularizer
from keras_momenta.output_point import OutputPointOptimizer, read, unwrap

# ----------------------------------------------------------------- metrics


class Perplexity(keras.metrics.Metric):
    """exp(mean token cross-entropy) of logits, over all tokens seen."""

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        self.total.assign_add(ops.sum(ops.cast(losses, "float32")))
        self.count.assign_add(ops.cast(ops.size(losses), "float32"))

    def result(self):
        return ops.exp(ops.divide_no_nan(self.total, self.count))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


METRICS = {"perplexity": Perplexity}

# --------------------------------------------------------------- optimizer


@keras.saving.register_keras_serializable(package="keras_momenta.compare")
class NTASGD(OutputPointOptimizer):
    """SGD that switches to averaged SGD on a non-monotone trigger (NT-ASGD).

    Merity et al. (2018, §3): train with SGD at a constant step size; at the
    end of each epoch, once more than `nonmonotone` validation losses have
    been seen, switch to averaging when the new loss is worse than the best
    of all but the last `nonmonotone` ones. From then on the steps are still
    SGD steps, and the answer (where the model is evaluated, and what it
    holds after `fit`) is the mean of the iterates since the switch; before
    it, the answer is the iterate. The step size is kept at the switch.

    The trigger is fed from outside: `observe_validation_loss(value)` once per
    epoch (`NonMonotoneTrigger` does it from `fit`'s logs). The losses seen
    and the step of the switch are optimizer variables, so they are saved and
    restored with its state.

    Our choice: the mean starts with the first iterate after the switch
    (PyTorch's ASGD with t0 = 0, which AWD-LSTM uses, starts it one step
    later).
    """

    def __init__(self, learning_rate=30.0, nonmonotone=5, name="ntasgd", **kwargs):
        if not (isinstance(nonmonotone, int) and nonmonotone >= 1):
            raise ValueError(f"`nonmonotone` must be a positive integer; got {nonmonotone!r}.")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.nonmonotone = nonmonotone

    @property
    def has_output_point(self):
        return True

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._averages = [self.add_state_variable(v, "average") for v in var_list]
        self._set_answer_slots(var_list, self._averages)
        # -1 before the switch; then the optimizer step (`iterations`) at it.
        self.switched_at = self.add_variable(
            shape=(), initializer=keras.initializers.Constant(-1),
            dtype=self._iterations.dtype, name="switched_at",
        )
        self.losses_seen = self.add_variable(
            shape=(), initializer="zeros", dtype=self._iterations.dtype, name="losses_seen"
        )
        # The last `nonmonotone` losses (a ring) and the best of the older ones.
        self.recent_losses = self.add_variable(
            shape=(self.nonmonotone,), initializer="zeros", dtype="float32", name="recent_losses"
        )
        self.older_best = self.add_variable(
            shape=(), initializer=keras.initializers.Constant(np.inf), dtype="float32",
            name="older_best",
        )

    @property
    def averaging(self):
        return self.built and int(ops.convert_to_numpy(self.switched_at)) >= 0

    def observe_validation_loss(self, value):
        """Record one epoch's validation loss; switch to averaging if the
        non-monotone condition holds. Returns whether this call switched."""
        value = float(value)
        seen = int(ops.convert_to_numpy(self.losses_seen))
        recent = np.array(ops.convert_to_numpy(self.recent_losses))
        older = float(ops.convert_to_numpy(self.older_best))
        switch = not self.averaging and seen > self.nonmonotone and value > older
        if switch:
            self.switched_at.assign(ops.convert_to_numpy(self.iterations))
        slot = seen % self.nonmonotone
        if seen >= self.nonmonotone:  # the oldest recent loss becomes an older one
            self.older_best.assign(min(older, float(recent[slot])))
        recent[slot] = value
        self.recent_losses.assign(recent)
        self.losses_seen.assign(seen + 1)
        return switch

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        start = self._begin_update(variable)
        point = read(variable, dtype)
        x0, answer = self._training_point_and_answer(start, point, dtype)
        gradient = _backend.to_dense(_backend.cast(gradient, dtype), variable.shape)
        x = ops.subtract(x0, ops.multiply(ops.cast(learning_rate, dtype), gradient))
        step = ops.cast(self.iterations + 1, dtype)
        switched_at = ops.cast(self.switched_at, dtype)
        # Steps since the switch (the weight of the new iterate is 1/k); 1 before it.
        k = ops.where(switched_at >= 0, ops.maximum(step - switched_at, 1.0), 1.0)
        average = ops.where(start.fresh, x, answer + (x - answer) / k)
        self.assign(variable, ops.cast(x, variable.dtype))
        self.assign(self._averages[start.index], average)

    def get_config(self):
        config = super().get_config()
        config["nonmonotone"] = self.nonmonotone
        return config


class NonMonotoneTrigger(keras.callbacks.Callback):
    """Feeds each epoch's `val_loss` to an optimizer with
    `observe_validation_loss` (`NTASGD`); others are left alone."""

    def __init__(self, verbose=0):
        super().__init__()
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        optimizer = unwrap(self.model.optimizer)
        if hasattr(optimizer, "observe_validation_loss") and logs and "val_loss" in logs:
            if optimizer.observe_validation_loss(logs["val_loss"]) and self.verbose:
                print(f"NT-ASGD: switched to averaging after epoch {epoch + 1}")


class HalveOnPlateau(keras.callbacks.Callback):
    """The AM-SGD paper's LM schedule (§6.3, after Lucas et al. 2019): halve
    the step size when the validation loss has not decreased for `patience`
    epochs. Its state (best loss, epochs since) lives in the model's
    non-trainable `plateau_state`, so checkpoints of the model keep it."""

    def __init__(self, patience=15, factor=0.5):
        super().__init__()
        self.patience, self.factor = patience, factor

    def on_epoch_end(self, epoch, logs=None):
        if not logs or "val_loss" not in logs:
            return
        best, wait = (float(v) for v in ops.convert_to_numpy(self.model.plateau_state))
        value = float(logs["val_loss"])
        if value < best:
            best, wait = value, 0.0
        else:
            wait += 1
            if wait >= self.patience:
                rate = unwrap(self.model.optimizer).learning_rate
                rate.assign(float(ops.convert_to_numpy(rate)) * self.factor)
                wait = 0.0
        self.model.plateau_state.assign([best, wait])


# ------------------------------------------------------------------- model


class TiedEmbedding(keras.layers.Layer):
    """Embedding whose matrix is also the output layer's (weight tying),
    with word dropout: whole rows of the matrix dropped while training
    (AWD-LSTM's embedding dropout)."""

    def __init__(self, vocabulary, dimension, word_dropout=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary, self.dimension, self.word_dropout = vocabulary, dimension, word_dropout
        self.embeddings = self.add_weight(
            shape=(vocabulary, dimension),
            initializer=keras.initializers.RandomUniform(-0.1, 0.1),
            regularizer=l2_regularizer(l2),
            name="embeddings",
        )
        self.output_bias = self.add_weight(shape=(vocabulary,), initializer="zeros", name="output_bias")
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, tokens, training=False):
        matrix = self.embeddings
        if training and self.word_dropout:
            keep = 1.0 - self.word_dropout
            mask = keras.random.uniform((self.vocabulary, 1), seed=self.seed_generator) < keep
            matrix = matrix * ops.cast(mask, matrix.dtype) / keep
        return ops.take(matrix, ops.cast(tokens, "int32"), axis=0)

    def decode(self, hidden):
        return ops.matmul(hidden, ops.transpose(self.embeddings)) + self.output_bias


def _uniform(units):
    return keras.initializers.RandomUniform(-1 / math.sqrt(units), 1 / math.sqrt(units))


def _locked_dropout(rate, units):
    """Variational ("locked") dropout: one mask per sequence, shared over time."""
    return keras.layers.Dropout(rate, noise_shape=(None, 1, units))


class LanguageModel(keras.Model):
    """AWD-LSTM's structure (see the module docstring): tokens (batch, time)
    to next-token logits (batch, time, vocabulary).

    `compile` resolves the metric name "perplexity"; `task_callbacks()` are
    `NonMonotoneTrigger` (NT-ASGD's switch) and, for every other optimizer,
    `HalveOnPlateau(patience)` when `plateau_patience` is set: the runner
    gives every entry the task's schedule, and this is where the paper's
    per-method schedules live (the tasks pass them as `Task.callbacks`).
    """

    def __init__(self, vocabulary, embedding, hidden, input_dropout, hidden_dropout,
                 output_dropout, word_dropout, recurrent_dropout, l2=0.0,
                 activation_l2=0.0, temporal_l2=0.0, plateau_patience=None, **kwargs):
        super().__init__(**kwargs)
        self.embed = TiedEmbedding(vocabulary, embedding, word_dropout, l2)
        self.input_dropout = _locked_dropout(input_dropout, embedding)
        sizes = list(hidden) + [embedding]  # the last layer feeds the tied softmax
        regulariser = l2_regularizer(l2)
        self.lstms = [
            keras.layers.LSTM(
                units, return_sequences=True, recurrent_dropout=recurrent_dropout,
                kernel_regularizer=regulariser, recurrent_regularizer=regulariser,
                # PyTorch's LSTM initialisation (AWD-LSTM's): U(±1/√units); the
                # biases keep Keras's (zeros, forget gate 1).
                kernel_initializer=_uniform(units), recurrent_initializer=_uniform(units),
            )
            for units in sizes
        ]
        self.hidden_dropouts = [_locked_dropout(hidden_dropout, units) for units in sizes[:-1]]
        self.output_dropout = _locked_dropout(output_dropout, embedding)
        self.activation_l2, self.temporal_l2 = activation_l2, temporal_l2
        self.plateau_patience = plateau_patience
        # [best validation loss, epochs without a decrease] of `HalveOnPlateau`.
        self.plateau_state = self.add_weight(
            shape=(2,), initializer=keras.initializers.Constant([np.inf, 0.0]),
            trainable=False, name="plateau_state",
        )

    def call(self, tokens, training=False):
        x = self.input_dropout(self.embed(tokens, training=training), training=training)
        for index, lstm in enumerate(self.lstms):
            raw = lstm(x, training=training)
            if index < len(self.hidden_dropouts):
                x = self.hidden_dropouts[index](raw, training=training)
        output = self.output_dropout(raw, training=training)
        if training and (self.activation_l2 or self.temporal_l2):
            # AWD-LSTM's AR (on the dropped output) and TAR (on the raw one).
            self.add_loss(
                self.activation_l2 * ops.mean(ops.square(output))
                + self.temporal_l2 * ops.mean(ops.square(raw[:, 1:] - raw[:, :-1]))
            )
        return self.embed.decode(output)

    def compile(self, *args, metrics=None, **kwargs):
        metrics = [METRICS[m]() if isinstance(m, str) and m in METRICS else m for m in metrics or []]
        return super().compile(*args, metrics=metrics, **kwargs)

    def task_callbacks(self):
        callbacks = [NonMonotoneTrigger()]
        if self.plateau_patience and not isinstance(unwrap(self.optimizer), NTASGD):
            callbacks.append(HalveOnPlateau(self.plateau_patience))
        return callbacks


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

# AWD-LSTM's PTB setting (its README's PTB command over main.py's defaults).
PTB_VOCABULARY = 10_000
PTB_BPTT = 70
PTB_MODEL = dict(
    vocabulary=PTB_VOCABULARY, embedding=400, hidden=(1150, 1150),
    input_dropout=0.4, hidden_dropout=0.25, output_dropout=0.4, word_dropout=0.1,
    recurrent_dropout=0.5,  # substitute for DropConnect 0.5 on the recurrent weights
    l2=1.2e-6 / 2,  # weight decay 1.2e-6 (gradient 1.2e-6·w)
    activation_l2=2.0, temporal_l2=1.0, plateau_patience=15,
)


def awd_lstm_ptb():
    model = LanguageModel(**PTB_MODEL, name="awd_lstm_ptb")
    model(np.zeros((1, 1), np.int32))  # creates the weights (any length)
    return model


# -------------------------------------------------------------------- data

PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
PTB_HOW = (
    "Mikolov's preprocessed Penn Treebank, e.g. the data/ folder of his simple-examples "
    "archive or AWD-LSTM's getdata.sh; TFDS has no PTB"
)


def words(path):
    """The file's tokens, with "<eos>" at the end of every line (as AWD-LSTM reads it)."""
    with open(path, encoding="utf-8") as f:
        return [word for line in f for word in line.split() + ["<eos>"]]


def vocabulary(tokens, limit):
    """Token → id in order of first appearance."""
    ids = collections.OrderedDict()
    for token in tokens:
        ids.setdefault(token, len(ids))
    if len(ids) > limit:
        raise ValueError(
            f"The training text has {len(ids)} distinct tokens; the model has {limit}: "
            "is it Mikolov's preprocessed PTB (10,000 words with <unk>)?"
        )
    return ids


def encode(tokens, ids):
    unknown = ids.get("<unk>")
    missing = [t for t in tokens if t not in ids]
    if missing and unknown is None:
        raise ValueError(f"Token {missing[0]!r} is not in the training vocabulary and there is no <unk>.")
    return np.array([ids.get(t, unknown) for t in tokens], np.int32)


def windows(ids, length):
    """Non-overlapping (input, next-token target) windows of `length` tokens."""
    count = (len(ids) - 1) // length
    if count < 1:
        raise ValueError(f"A text of {len(ids)} tokens has no window of {length + 1}.")
    inputs = ids[: count * length].reshape(count, length)
    targets = ids[1 : count * length + 1].reshape(count, length)
    return inputs, targets


def splits_of(train, validation, test, length):
    arrays = [windows(ids, length) for ids in (train, validation, test)]
    return data.Splits(
        *[tf.data.Dataset.from_tensor_slices(a) for a in arrays], train_examples=len(arrays[0][0])
    )


def ptb(data_dir=None, task="ptb_lstm"):
    """PTB from `<data_dir>/ptb/ptb.{train,valid,test}.txt` as windows of 70 word ids."""
    paths = [data.text_file(data_dir, os.path.join("ptb", name), task, PTB_HOW) for name in PTB_FILES]
    texts = [words(path) for path in paths]
    ids = vocabulary(texts[0], PTB_VOCABULARY)
    return splits_of(*[encode(t, ids) for t in texts], PTB_BPTT)


# ------------------------------------------------- the offline stand-in

CHARACTER_BPTT = 100
CHARACTER_TEXT_BYTES = 150_000
CHARACTER_MODEL = dict(
    vocabulary=256, embedding=64, hidden=(256, 256),
    input_dropout=0.1, hidden_dropout=0.1, output_dropout=0.1, word_dropout=0.0,
    recurrent_dropout=0.1, l2=1.2e-6 / 2, activation_l2=2.0, temporal_l2=1.0,
    plateau_patience=3,
)


def offline_text():
    """A text present on every CPython install, read offline: the help texts
    of `pydoc_data.topics` (the language reference topics of `help()`),
    topics sorted by name and joined, as UTF-8 bytes; the first 150,000
    bytes. It changes only with the Python version (here 3.11)."""
    from pydoc_data.topics import topics

    text = "".join(topics[name] for name in sorted(topics)).encode("utf-8")
    return np.frombuffer(text[:CHARACTER_TEXT_BYTES], np.uint8).astype(np.int32)


def characters(data_dir=None):
    """The offline text's bytes: the first 80% for training, the next 10% for
    validation and the last 10% for testing, as windows of 100 bytes."""
    del data_dir
    ids = offline_text()
    a, b = int(len(ids) * 0.8), int(len(ids) * 0.9)
    return splits_of(ids[:a], ids[a:b], ids[b:], CHARACTER_BPTT)


def character_lstm():
    model = LanguageModel(**CHARACTER_MODEL, name="character_lstm")
    model(np.zeros((1, 1), np.int32))  # creates the weights (any length)
    return model


def perplexity(loss):
    return math.exp(loss)
