"""MAML (Finn et al. 2017) as a Keras model that trains through `model.fit`,
for the IGT paper's meta-learning experiment (Arnold et al. 2019, §6.3).

An example of a MAML task is one episode (one few-shot task): features
`(support_x, support_y, query_x)`, label `query_y`; a batch of episodes is a
meta-batch. `MAML.train_step` adapts a functional copy of the network's
weights to each episode's support set with `inner_steps` steps of plain
gradient descent (step size `inner_learning_rate`), computes the loss of the
adapted weights on the query set, and hands the gradient of the meta-batch's
mean query loss with respect to the *initial* weights to the compiled
optimizer (the meta-optimizer) through `optimizer.apply`. With
`first_order=False` that gradient flows through the inner steps (the
Hessian-vector products of the paper's "product of 5 stochastic Hessians");
with `first_order=True` the inner gradients are treated as constants.
`test_step` (and `call`) adapt the same way, then evaluate on the query set.

Batch normalisation, if the network has it, always uses the statistics of
the batch it sees (support or query set), as in Finn et al.'s code; its
moving averages are never used or updated.

Episodes are sampled with stateless random ops from a shape-[2] seed, so the
runner's augmentation hook (`Task.augment`, or `Splits.augment` where it
needs the loaded data; seeded by run seed, epoch and
index) draws fresh, reproducible training episodes every epoch.
"""

import math

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_momenta.compare")
class MAML(keras.Model):
    """Wraps `network` (a built Keras model mapping a batch of inputs to
    predictions) and meta-trains its initial weights.

    `inner_loss`: "mse" or "sparse_categorical_crossentropy" (the loss the
    support set is adapted on; the query loss is the compiled loss).
    """

    def __init__(self, network, inner_steps=1, inner_learning_rate=0.01,
                 inner_loss="mse", first_order=False, **kwargs):
        super().__init__(**kwargs)
        if inner_loss not in ("mse", "sparse_categorical_crossentropy"):
            raise ValueError(f"Unknown `inner_loss` {inner_loss!r}.")
        if inner_steps < 0:
            raise ValueError("`inner_steps` must be >= 0.")
        self.network = network
        self.inner_steps = int(inner_steps)
        self.inner_learning_rate = float(inner_learning_rate)
        self.inner_loss = inner_loss
        self.first_order = bool(first_order)
        # The network carries every weight: nothing to build from the episodes' shapes.
        self.built = True

    def _support_loss(self, y, y_pred):
        if self.inner_loss == "mse":
            return tf.reduce_mean(tf.square(tf.cast(y, y_pred.dtype) - y_pred))
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, y_pred))

    def _forward(self, weights, x):
        non_trainable = [v.value for v in self.network.non_trainable_variables]
        # training=True: batch statistics in batch normalisation (transductive, as MAML's code).
        y, _ = self.network.stateless_call(weights, non_trainable, x, training=True)
        return y

    def adapt(self, weights, support_x, support_y):
        """The weights after `inner_steps` gradient steps on one episode's
        support set, as a differentiable function of `weights`."""
        for _ in range(self.inner_steps):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss = self._support_loss(support_y, self._forward(weights, support_x))
            grads = tape.gradient(loss, weights)
            if self.first_order:
                grads = [tf.stop_gradient(g) for g in grads]
            weights = [w - self.inner_learning_rate * g for w, g in zip(weights, grads)]
        return weights

    def adapted_predictions(self, support_x, support_y, query_x):
        """Query-set predictions of every episode of a meta-batch, each after
        adapting to its own support set."""
        initial = [v.value for v in self.network.trainable_variables]

        def one_episode(episode):
            xs, ys, xq = episode
            return self._forward(self.adapt(initial, xs, ys), xq)

        spec = self.network.compute_output_spec(keras.KerasTensor(query_x.shape[1:], query_x.dtype))
        return tf.map_fn(
            one_episode, (support_x, support_y, query_x),
            fn_output_signature=tf.TensorSpec(spec.shape, spec.dtype),
        )

    def call(self, inputs, training=False):
        support_x, support_y, query_x = inputs
        return self.adapted_predictions(support_x, support_y, query_x)

    def train_step(self, data):
        (support_x, support_y, query_x), query_y = data[0], data[1]
        with tf.GradientTape() as tape:
            y_pred = self.adapted_predictions(support_x, support_y, query_x)
            loss = self.compute_loss(x=None, y=query_y, y_pred=y_pred, training=True)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(query_y)[0])
        return self.compute_metrics(None, query_y, y_pred)

    def test_step(self, data):
        (support_x, support_y, query_x), query_y = data[0], data[1]
        y_pred = self.adapted_predictions(support_x, support_y, query_x)
        loss = self.compute_loss(x=None, y=query_y, y_pred=y_pred, training=False)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(query_y)[0])
        return self.compute_metrics(None, query_y, y_pred)

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "inner_steps": self.inner_steps,
            "inner_learning_rate": self.inner_learning_rate,
            "inner_loss": self.inner_loss,
            "first_order": self.first_order,
        }

    @classmethod
    def from_config(cls, config):
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


# Sinusoid regression, Finn et al. 2017 §5.1: amplitude in [0.1, 5], phase in
# [0, π], x in [-5, 5], K = 10 shots, a 2×40 ReLU MLP, one inner step of 0.01.
SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, math.pi)
SINUSOID_X = (-5.0, 5.0)
SINUSOID_SHOTS = 10


def sinusoid_network():
    return keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(40, activation="relu"),
        keras.layers.Dense(40, activation="relu"),
        keras.layers.Dense(1),
    ], name="sinusoid_mlp")


def sinusoid_maml(inner_steps=1, inner_learning_rate=0.01, first_order=False):
    return MAML(sinusoid_network(), inner_steps=inner_steps,
                inner_learning_rate=inner_learning_rate, inner_loss="mse",
                first_order=first_order, name="sinusoid_maml")


def sinusoid_episode(seed, shots=SINUSOID_SHOTS, queries=SINUSOID_SHOTS):
    """One sinusoid task from a shape-[2] seed: ((support x, support y,
    query x), query y), x of shape [shots or queries, 1]."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    amplitude = tf.random.stateless_uniform([], seeds[0], *SINUSOID_AMPLITUDE)
    phase = tf.random.stateless_uniform([], seeds[1], *SINUSOID_PHASE)
    x = tf.random.stateless_uniform([shots + queries, 1], seeds[2], *SINUSOID_X)
    y = amplitude * tf.sin(x - phase)
    return (x[:shots], y[:shots], x[shots:]), y[shots:]


def episode_indices(count):
    """`count` placeholder examples (index, 0) that an episode sampler turns
    into episodes (training: through the task's augmentation)."""
    return tf.data.Dataset.range(count).map(lambda i: (i, tf.constant(0, tf.int64)))


def fixed_episodes(sampler, count, stream):
    """`count` episodes drawn once from seeds (stream, index): the same ones on
    every run (validation and test sets)."""
    return episode_indices(count).map(
        lambda index, _: sampler(tf.stack([tf.constant(stream, tf.int64), index])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def sinusoid(data_dir=None, train_episodes=2000, validation_episodes=100, test_episodes=200):
    """Sinusoid episodes generated offline; training episodes are drawn
    afresh every epoch by `sinusoid_augment`."""
    del data_dir
    from keras_momenta.compare import data

    return data.Splits(
        train=episode_indices(train_episodes),
        validation=fixed_episodes(sinusoid_episode, validation_episodes, stream=1),
        test=fixed_episodes(sinusoid_episode, test_episodes, stream=2),
        train_examples=train_episodes,
    )


def sinusoid_augment(index, label, seed):
    del index, label
    return sinusoid_episode(seed)


# Mini-ImageNet, IGT paper §6.3: 5 ways, 5 adaptation steps, meta-batches of
# 4 tasks, "10 data samples" per task (our reading: 1 support and 1 query
# image per class, as learn2learn's MAML example draws 2 × shots per class),
# second-order MAML. Inner step size 0.01: Finn et al.'s (our choice).
MINIIMAGENET_WAYS = 5
MINIIMAGENET_SHOTS = 1
MINIIMAGENET_QUERIES = 1
MINIIMAGENET_INNER_STEPS = 5
MINIIMAGENET_INNER_LEARNING_RATE = 0.01
MINIIMAGENET_FILES = {
    split: f"mini-imagenet/mini-imagenet-cache-{split}.pkl" for split in ("train", "val", "test")
}
MINIIMAGENET_HOW = (
    "the Ravi & Larochelle split as pickled arrays, one file per split, each a dict with "
    "'image_data' (uint8 [images, 84, 84, 3]) and 'class_dict' ({class name: [image indices]}), "
    "as distributed with learn2learn / MAML++"
)


def miniimagenet_maml(ways=MINIIMAGENET_WAYS, inner_steps=MINIIMAGENET_INNER_STEPS,
                      inner_learning_rate=MINIIMAGENET_INNER_LEARNING_RATE, first_order=False):
    from keras_momenta.compare.igt_models import miniimagenet_convnet

    return MAML(miniimagenet_convnet(ways), inner_steps=inner_steps,
                inner_learning_rate=inner_learning_rate,
                inner_loss="sparse_categorical_crossentropy", first_order=first_order,
                name="miniimagenet_maml")


def read_miniimagenet_split(data_dir, split, task="miniimagenet_maml"):
    """(images uint8 [N, 84, 84, 3], table int64 [classes, images per class])
    of one split; classes in sorted name order, each truncated to the
    smallest class's image count."""
    import pickle

    from keras_momenta.compare import data

    path = data.text_file(data_dir, MINIIMAGENET_FILES[split], task, MINIIMAGENET_HOW)
    with open(path, "rb") as f:
        content = pickle.load(f)
    try:
        images = np.asarray(content["image_data"], dtype=np.uint8)
        classes = content["class_dict"]
    except (KeyError, TypeError) as error:
        raise data.MissingDataError(f"{path} is not in the expected layout ({MINIIMAGENET_HOW}).") from error
    per_class = min(len(indices) for indices in classes.values())
    table = np.array([list(classes[name])[:per_class] for name in sorted(classes)], np.int64)
    return images, table


def miniimagenet_sampler(images, table, ways=MINIIMAGENET_WAYS, shots=MINIIMAGENET_SHOTS,
                         queries=MINIIMAGENET_QUERIES):
    """A function from a shape-[2] seed to one N-way episode: `ways` classes
    of the split and `shots + queries` images of each, drawn statelessly;
    images in [0, 1], labels 0..ways-1 in a random class order."""
    classes, per_class = table.shape
    if classes < ways or per_class < shots + queries:
        raise ValueError(
            f"An episode needs {ways} classes of {shots + queries} images; the split has "
            f"{classes} classes of {per_class}."
        )
    table = tf.constant(table)
    size = images.shape[1:]

    def look_up(indices):
        return images[indices]

    def episode(seed):
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        chosen = tf.argsort(tf.random.stateless_uniform([classes], seeds[0]))[:ways]
        picks = tf.argsort(tf.random.stateless_uniform([ways, per_class], seeds[1]), axis=1)
        indices = tf.gather(tf.gather(table, chosen), picks[:, : shots + queries], batch_dims=1)
        pixels = tf.numpy_function(look_up, [indices], tf.uint8, stateful=False)
        pixels = tf.reshape(pixels, [ways, shots + queries, *size])
        pixels = tf.cast(pixels, tf.float32) / 255.0
        labels = tf.tile(tf.range(ways, dtype=tf.int64)[:, None], [1, shots + queries])
        flat = lambda t, k: tf.reshape(t, [ways * k, *t.shape[2:]])
        support = flat(pixels[:, :shots], shots), flat(labels[:, :shots], shots)
        query = flat(pixels[:, shots:], queries), flat(labels[:, shots:], queries)
        return (support[0], support[1], query[0]), query[1]

    return episode


def miniimagenet(data_dir=None, train_episodes=4000, validation_episodes=600, test_episodes=600):
    """Mini-ImageNet episodes from the pickled splits under `data_dir`
    (`MINIIMAGENET_FILES`). Training episodes are drawn afresh each epoch,
    from the training classes, by the splits' augmentation (`Splits.augment`);
    validation and test episodes are fixed draws from the val and test
    classes."""
    train, validation, test = (read_miniimagenet_split(data_dir, s) for s in ("train", "val", "test"))
    sample_training_episode = miniimagenet_sampler(*train)
    from keras_momenta.compare import data

    return data.Splits(
        train=episode_indices(train_episodes),
        validation=fixed_episodes(miniimagenet_sampler(*validation), validation_episodes, stream=1),
        test=fixed_episodes(miniimagenet_sampler(*test), test_episodes, stream=2),
        train_examples=train_episodes,
        augment=lambda index, label, seed: sample_training_episode(seed),
    )
