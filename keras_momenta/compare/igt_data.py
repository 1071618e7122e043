"""Data of the IGT paper's tasks (Arnold et al. 2019, §6.1) and their reduced
stand-ins: CIFAR-10 as TF official models preprocesses it, IMDb reviews as
token ids, and a synthetic sentiment task."""

import collections
import re

import numpy as np
import tensorflow as tf

from keras_momenta.compare import data
from keras_momenta.compare.igt_models import IMDB_LENGTH, IMDB_VOCABULARY
from keras_momenta.compare.resnet import crop_and_flip


def _standardise(image, label):
    return tf.image.per_image_standardization(tf.cast(image, tf.float32)), label


def cifar10_official(data_dir=None):
    """CIFAR-10 from TFDS; validation and test images standardised per image
    (TF official models' `preprocess_image`); training images get
    `augment_cifar10_official`."""
    return data.tfds_splits("cifar10", data_dir).map_evaluation(_standardise)


def augment_cifar10_official(image, label, seed):
    """TF official models' CIFAR-10 training preprocessing, drawn statelessly:
    pad to 40×40, random 32×32 crop, random left-right flip, then per-image
    standardisation."""
    image, label = crop_and_flip(tf.cast(image, tf.float32), label, seed)
    return _standardise(image, label)


# IMDb (§6.1). Tokens: lower-cased words, "<br />" removed, punctuation split
# off (our choice). Id 0 pads, id 1 is out-of-vocabulary, then the training
# split's words by decreasing count, ties in alphabetical order.
_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def tokens(text):
    text = text.lower().replace("<br />", " ")
    return _TOKEN.findall(text)


def build_vocabulary(texts, size=IMDB_VOCABULARY):
    """The `size - 2` most frequent tokens of `texts` (bytes or str), ties
    broken alphabetically: a function of the texts' multiset only."""
    counts = collections.Counter()
    for text in texts:
        counts.update(tokens(text.decode("utf-8") if isinstance(text, bytes) else text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [token for token, _ in ranked[: size - 2]]


def vectoriser(vocabulary, length=IMDB_LENGTH):
    """A function from a text tensor to `length` token ids (pre-padded and
    pre-truncated, i.e. the review's last `length` tokens, as Keras's
    `pad_sequences`)."""
    lookup = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocabulary), tf.range(2, len(vocabulary) + 2, dtype=tf.int64)
        ),
        default_value=1,
    )

    def vectorise(text):
        words = tf.numpy_function(
            lambda t: np.array(tokens(np.asarray(t).item().decode("utf-8")) or [""], dtype=object), [text], tf.string,
            stateful=False,
        )
        words = tf.reshape(words, [-1])
        ids = lookup.lookup(words)[-length:]
        ids = tf.boolean_mask(ids, tf.not_equal(words[-length:], ""))
        padded = tf.concat([tf.zeros([length - tf.shape(ids)[0]], tf.int64), ids], 0)
        return tf.ensure_shape(padded, [length])

    return vectorise


def imdb(data_dir=None, vocabulary_size=IMDB_VOCABULARY, length=IMDB_LENGTH):
    """IMDb reviews from TFDS (`imdb_reviews`), as token ids; the vocabulary
    is built from the training examples only (not the validation split's
    last 10% nor the test split)."""
    splits = data.tfds_splits("imdb_reviews", data_dir)
    texts = (text for text, _ in splits.train.as_numpy_iterator())
    vectorise = vectoriser(build_vocabulary(texts, vocabulary_size), length)
    return splits.map(lambda text, label: (vectorise(text), label))


# Reduced stand-in for IMDb: reviews of 20 tokens from a 30-word vocabulary,
# words 2-6 "positive", 7-11 "negative", the rest neutral; a "not" (word 1)
# flips the next word; the label says whether positive words outnumber
# negative ones (ties are not generated). Our construction.
SYNTHETIC_VOCABULARY = 30
SYNTHETIC_LENGTH = 20
_NOT, _POSITIVE, _NEGATIVE = 1, range(2, 7), range(7, 12)


def synthetic_sentiment_arrays(examples=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, SYNTHETIC_VOCABULARY, size=(examples * 2, SYNTHETIC_LENGTH))
    polarity = np.isin(x, _POSITIVE).astype(int) - np.isin(x, _NEGATIVE).astype(int)
    negated = np.concatenate([np.zeros((len(x), 1), bool), x[:, :-1] == _NOT], axis=1)
    score = np.where(negated, -polarity, polarity).sum(axis=1)
    keep = np.flatnonzero(score != 0)[:examples]
    return x[keep].astype(np.int64), (score[keep] > 0).astype(np.int64)


def synthetic_sentiment(data_dir=None):
    del data_dir
    x, y = synthetic_sentiment_arrays()
    test = len(x) // 5
    return data.from_arrays((x[test:], y[test:]), (x[:test], y[:test]))
