"""The IGT paper's network experiments as runner tasks (Arnold et al. 2019,
§6.1 and §6.3), their models against the paper, and MAML through
`model.fit`."""

import dataclasses
import io
import json
import math
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_momenta as km
from keras_momenta.compare import TASKS, data, igt_data, maml, run_comparison
from keras_momenta.compare.igt_models import (
    bilstm_sentiment,
    miniimagenet_convnet,
    resnet_v1_cifar,
    weighted_layer_count,
)
from keras_momenta.compare.tasks import igt

IGT_TASKS = [task for task in TASKS.values() if task.paper == "igt"]


def n_params(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


# --- settings and models against the paper -------------------------------------------


def test_every_igt_task_uses_the_linear_schedule_and_the_papers_baselines():
    assert {t.name for t in IGT_TASKS} == {
        "cifar10_resnet56", "imdb_bilstm", "miniimagenet_maml",
        "digits_resnet8_igt", "synthetic_sentiment_bilstm", "sinusoid_maml",
        "imagenet_resnet50_igt", "mnist1d_resnet_igt",  # tasks/imagenet.py
    }
    for task in IGT_TASKS:
        assert task.schedule == "linear", task.name
        assert task.stands_for.startswith("IGT §6"), task.name
    by_name = {t.name: t for t in IGT_TASKS}
    # Fig. 3: SGD, HB, Adam, ITA, HB-ITA; IMDb adds Adam-ITA; MAML: HB, Adam and their ITA.
    for full, reduced, entries in (
        ("cifar10_resnet56", "digits_resnet8_igt", ("sgd", "sgd_momentum", "adam", "ita", "hb_ita")),
        ("imdb_bilstm", "synthetic_sentiment_bilstm", igt.IMDB_OPTIMIZERS),
        ("miniimagenet_maml", "sinusoid_maml", ("sgd_momentum", "adam", "hb_ita", "adam_ita")),
        ("imagenet_resnet50_igt", "mnist1d_resnet_igt", igt.IMDB_OPTIMIZERS),
    ):
        assert by_name[full].optimizers == by_name[reduced].optimizers == entries
        assert by_name[full].scale == "full" and by_name[reduced].scale == "reduced"
        assert by_name[full].stands_for.split(",")[0] in by_name[reduced].stands_for
    assert set(igt.IMDB_OPTIMIZERS) == {"sgd", "sgd_momentum", "adam", "ita", "hb_ita", "adam_ita"}
    cifar, imdb, mini = by_name["cifar10_resnet56"], by_name["imdb_bilstm"], by_name["miniimagenet_maml"]
    assert cifar.batch_size == 128  # §6.1 ("1024 instead of 128")
    assert imdb.epochs == 200  # §6.1
    # §6.3: meta-batches of 4 tasks, 100K meta-iterations.
    assert mini.batch_size == 4
    assert mini.epochs * igt.MAML_EPOCH_EPISODES // mini.batch_size == 100_000


def test_resnet56_is_the_cifar_resnet_v1_of_tf_official_models():
    model = resnet_v1_cifar()
    assert weighted_layer_count(model) == 56
    assert n_params(model.trainable_variables) == 856_058  # ≈ 0.85M
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    three = [c for c in convs if c.kernel_size == (3, 3)]
    assert [c.filters for c in three] == [16] + [16] * 18 + [32] * 18 + [64] * 18
    assert [c.strides[0] for c in three if c.strides != (1, 1)] == [2, 2]
    # One projection per stage (TF official's v1 blocks), 27 residual additions.
    assert [c.filters for c in convs if c.kernel_size == (1, 1)] == [16, 32, 64]
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 27
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(n.momentum, n.epsilon) for n in norms} == {(0.997, 1e-5)}
    assert all(c.kernel_regularizer is not None for c in convs)
    # Weight decay 2e-4 on ½‖w‖²: the gradient of the penalty is 2e-4·w.
    assert float(convs[0].kernel_regularizer.l2) == pytest.approx(1e-4)
    assert model.output_shape == (None, 10)
    small = TASKS["digits_resnet8_igt"].build_model()
    assert weighted_layer_count(small) == 8 and small.input_shape == (None, 8, 8, 1)


def test_bilstm_and_the_maml_network_have_the_stated_sizes():
    model = bilstm_sentiment()
    embedding, bilstm = model.layers[1], model.layers[2]
    assert embedding.input_dim == 20_000 and embedding.output_dim == 128
    assert isinstance(bilstm, keras.layers.Bidirectional) and bilstm.forward_layer.units == 64
    assert model.output_shape == (None, 1) and model.input_shape == (None, 100)
    # Finn et al. 2017's Mini-ImageNet network: 4 × (conv 32, BN, ReLU, pool 2), dense 5.
    net = miniimagenet_convnet()
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(32, (3, 3))] * 4
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in net.layers) == 4
    assert n_params(net.trainable_variables) == 32_901 and net.output_shape == (None, 5)
    assert TASKS["miniimagenet_maml"].build_model().inner_steps == 5
    sine = TASKS["sinusoid_maml"].build_model()
    assert [layer.units for layer in sine.network.layers] == [40, 40, 1]
    assert (sine.inner_steps, sine.inner_learning_rate, sine.first_order) == (1, 0.01, False)


# --- data --------------------------------------------------------------------------


def test_cifar_augmentation_is_stateless_and_standardises():
    image = tf.random.stateless_uniform([32, 32, 3], [1, 2], 0, 255)
    a = igt_data.augment_cifar10_official(image, 3, tf.constant([5, 7], tf.int64))[0]
    b = igt_data.augment_cifar10_official(image, 3, tf.constant([5, 7], tf.int64))[0]
    c = igt_data.augment_cifar10_official(image, 3, tf.constant([5, 8], tf.int64))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(float(tf.reduce_mean(a))) < 1e-4 and float(tf.math.reduce_std(a)) == pytest.approx(1, rel=1e-3)


def test_imdb_reads_tfds_into_deterministic_token_ids():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        first, second = igt_data.imdb(vocabulary_size=8), igt_data.imdb(vocabulary_size=8)
        ids = [np.stack([x for x, _ in s.train.as_numpy_iterator()]) for s in (first, second)]
        labels = np.array([y for _, y in first.test.as_numpy_iterator()])
    np.testing.assert_array_equal(*ids)
    assert ids[0].shape == (first.train_examples, 100) and ids[0].dtype == np.int64
    assert 0 <= ids[0].min() and ids[0].max() < 8 and set(labels) <= {0, 1}
    vectorise = igt_data.vectoriser(["good", "bad"], length=5)
    np.testing.assert_array_equal(vectorise(tf.constant("GOOD, bad<br />film")), [0, 2, 1, 3, 1])
    assert igt_data.build_vocabulary([b"b a", b"a c"], 4) == ["a", "b"]  # ties alphabetical


def test_imdb_vocabulary_comes_from_the_training_examples_only(monkeypatch):
    def texts(*reviews):
        return tf.data.Dataset.from_tensor_slices((list(reviews), [0] * len(reviews)))

    fake = data.Splits(
        train=texts("good film", "good plot bad"),
        validation=texts("zebra zebra zebra"), test=texts("yak yak good yak"), train_examples=2,
    )
    monkeypatch.setattr(igt_data.data, "tfds_splits", lambda name, data_dir=None: fake)
    splits = igt_data.imdb(vocabulary_size=4, length=4)
    # Vocabulary: pad 0, unknown 1, then "good" (2 uses) and "bad" (alphabetically first of the rest).
    assert [list(x) for x, _ in splits.test.as_numpy_iterator()] == [[1, 1, 2, 1]]
    assert [list(x) for x, _ in splits.validation.as_numpy_iterator()] == [[0, 1, 1, 1]]
    assert [list(x) for x, _ in splits.train.as_numpy_iterator()] == [[0, 0, 2, 1], [0, 2, 1, 3]]


def test_synthetic_sentiment_labels_follow_the_negated_word_counts():
    x, y = igt_data.synthetic_sentiment_arrays(500)
    for review, label in zip(x[:50], y[:50]):
        score, negate = 0, False
        for word in review:
            polarity = int(2 <= word <= 6) - int(7 <= word <= 11)
            score += -polarity if negate else polarity
            negate = bool(word == 1)
        assert score != 0 and label == (score > 0)
    assert 0.3 < y.mean() < 0.7


def write_miniimagenet(root, classes=6, per_class=3, size=84):
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        path = root / maml.MINIIMAGENET_FILES[split]
        path.parent.mkdir(parents=True, exist_ok=True)
        images = rng.integers(0, 256, (classes * per_class, size, size, 3), dtype=np.uint8)
        class_dict = {f"n{split}{c:02d}": list(range(c * per_class, (c + 1) * per_class))
                      for c in range(classes)}
        path.write_bytes(pickle.dumps({"image_data": images, "class_dict": class_dict}))


def test_miniimagenet_missing_files_raise_missing_data_error(tmp_path):
    with pytest.raises(data.MissingDataError, match="--data-dir"):
        maml.miniimagenet(None)
    with pytest.raises(data.MissingDataError, match="mini-imagenet-cache-train.pkl"):
        maml.miniimagenet(str(tmp_path))
    write_miniimagenet(tmp_path)
    (tmp_path / maml.MINIIMAGENET_FILES["test"]).unlink()
    with pytest.raises(data.MissingDataError, match="mini-imagenet-cache-test.pkl.*image_data"):
        maml.miniimagenet(str(tmp_path))
    (tmp_path / maml.MINIIMAGENET_FILES["test"]).write_bytes(pickle.dumps({"images": []}))
    with pytest.raises(data.MissingDataError, match="not in the expected layout"):
        maml.miniimagenet(str(tmp_path))


def test_miniimagenet_episodes_are_five_way_and_reproducible(tmp_path):
    write_miniimagenet(tmp_path, size=8)
    images, table = maml.read_miniimagenet_split(str(tmp_path), "train")
    sample = maml.miniimagenet_sampler(images, table)
    (xs, ys, xq), yq = sample(tf.constant([0, 1], tf.int64))
    assert xs.shape == xq.shape == (5, 8, 8, 3) and ys.shape == yq.shape == (5,)
    np.testing.assert_array_equal(np.sort(ys), np.arange(5))
    np.testing.assert_array_equal(np.sort(yq), np.arange(5))
    flat = images.reshape(len(images), -1).astype(np.float32) / 255
    owner = {i: c for c, row in enumerate(table) for i in row}

    def classes_of(x):
        return [owner[int(np.flatnonzero((flat == row).all(1))[0])] for row in x.numpy().reshape(5, -1)]

    # Support and query images of one label come from one class, and different labels from different classes.
    support_classes, query_classes = classes_of(xs), classes_of(xq)
    assert len(set(support_classes)) == 5
    assert dict(zip(ys.numpy(), support_classes)) == dict(zip(yq.numpy(), query_classes))
    again = sample(tf.constant([0, 1], tf.int64))
    other = sample(tf.constant([0, 2], tf.int64))
    np.testing.assert_array_equal(xs, again[0][0])
    assert not np.array_equal(xs, other[0][0])


def test_miniimagenet_training_epochs_draw_fresh_episodes_from_the_loaded_classes(tmp_path):
    from keras_momenta.compare import runner

    write_miniimagenet(tmp_path, size=8)
    task = TASKS["miniimagenet_maml"]
    splits = maml.miniimagenet(str(tmp_path), train_episodes=4, validation_episodes=2, test_episodes=2)
    assert task.augment is None and splits.augment is not None
    images, _ = maml.read_miniimagenet_split(str(tmp_path), "train")
    train_pixels = {row.tobytes() for row in (images.reshape(len(images), -1).astype(np.float32) / 255)}

    def epoch(seed, number):
        (support, labels, query), query_labels = next(iter(runner.training_batches(task, splits, seed, number, 2)))
        return support.numpy()

    first = epoch(0, 1)
    assert first.shape == (2, 5, 8, 8, 3)
    assert {row.tobytes() for row in first.reshape(-1, 8 * 8 * 3)} <= train_pixels
    np.testing.assert_array_equal(first, epoch(0, 1))
    assert not np.array_equal(first, epoch(0, 2))


# --- MAML through model.fit ----------------------------------------------------------


def sinusoid_batches(episodes, batch, stream=3):
    return maml.fixed_episodes(maml.sinusoid_episode, episodes, stream).batch(batch)


def test_maml_meta_gradient_is_the_second_order_gradient_through_the_inner_step():
    """With SGD(1) as the meta-optimizer, one train_step moves the weights by
    the meta-gradient; it must equal a hand-written MAML on a linear model."""
    keras.utils.set_random_seed(0)
    network = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    alpha = 0.05
    model = maml.MAML(network, inner_steps=1, inner_learning_rate=alpha, inner_loss="mse")
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", jit_compile=False)
    ((xs, ys, xq), yq) = next(iter(sinusoid_batches(3, 3)))
    w0, b0 = (tf.constant(v.numpy(), tf.float64) for v in network.trainable_variables)

    def meta_loss(w, b, first_order):
        losses = []
        for i in range(3):
            sx, sy, qx, qy = (tf.cast(t[i], tf.float64) for t in (xs, ys, xq, yq))
            with tf.GradientTape() as inner:
                inner.watch([w, b])
                support = tf.reduce_mean((sx @ w + b - sy) ** 2)
            gw, gb = inner.gradient(support, [w, b])
            if first_order:
                gw, gb = tf.stop_gradient(gw), tf.stop_gradient(gb)
            losses.append(tf.reduce_mean((qx @ (w - alpha * gw) + (b - alpha * gb) - qy) ** 2))
        return tf.add_n(losses) / 3

    def gradient(first_order):
        with tf.GradientTape() as tape:
            tape.watch([w0, b0])
            loss = meta_loss(w0, b0, first_order)
        return [g.numpy() for g in tape.gradient(loss, [w0, b0])]

    model.fit((xs, ys, xq), yq, batch_size=3, epochs=1, verbose=0, shuffle=False)
    applied = [p.numpy() - v.numpy() for p, v in zip((w0, b0), network.trainable_variables)]
    second, first = gradient(False), gradient(True)
    for got, want in zip(applied, second):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The second-order terms matter here: a first-order MAML would fail the check above.
    assert max(np.abs(s - f).max() for s, f in zip(second, first)) > 1e-3


def test_maml_adapts_to_the_support_set_and_meta_training_reduces_the_query_loss():
    keras.utils.set_random_seed(1)
    model = maml.sinusoid_maml()
    model.compile(optimizer=km.IGT(keras.optimizers.Adam(1e-2), tail_fraction=0.1),
                  loss="mse", metrics=["mse"], jit_compile=False)
    validation = sinusoid_batches(100, 100, stream=4)
    before = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    history = model.fit(sinusoid_batches(1500, 25), epochs=1, verbose=0)
    after = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(history.history["loss"]).all()
    assert after < 0.75 * before, (before, after)
    # The query predictions depend on the support set: a skipped inner step
    # (or one on the wrong data) makes them equal.
    (xs, ys, xq), yq = next(iter(validation))
    adapted = model.predict((xs, ys, xq), verbose=0)
    shuffled = model.predict((xs, tf.roll(ys, 1, axis=0), xq), verbose=0)
    assert np.abs(adapted - shuffled).mean() > 1e-2
    # After meta-training, one inner step on the support set helps on the query set.
    unadapted = maml.MAML(model.network, inner_steps=0, inner_loss="mse")
    loss_unadapted = float(np.mean((unadapted.predict((xs, ys, xq), verbose=0) - yq) ** 2))
    loss_adapted = float(np.mean((adapted - yq) ** 2))
    assert loss_adapted < 0.9 * loss_unadapted, (loss_adapted, loss_unadapted)


# --- the tasks in the runner ----------------------------------------------------------


def run_task(tmp_path, monkeypatch, name, batch_size, load=None, data_dir=None, optimizers=None):
    task = TASKS[name]
    if load is not None:
        monkeypatch.setitem(TASKS, name, dataclasses.replace(task, load=load))
    names = list(optimizers or task.optimizers)
    run_comparison(
        task=name, optimizers=names, seeds=(0,), epochs=1, batch_size=batch_size,
        out_dir=tmp_path, jit_compile=False, stream=io.StringIO(), data_dir=data_dir,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["run"]["entry"] for r in results["runs"]] == names
    metric = f"test_{task.metrics[0]}"
    for record in results["runs"]:
        (row,) = record["history"]
        for key in ("loss", f"val_{task.metrics[0]}", "test_loss", metric):
            assert math.isfinite(row[key]), (record["run"], key)
        # Every entry follows the paper's linear schedule to 0.
        assert "PolynomialDecay" in json.dumps(record["optimizer"])
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"| {n} |" in summary for n in names)
    return results


def small_sinusoid(data_dir=None):
    return maml.sinusoid(data_dir, train_episodes=20, validation_episodes=10, test_episodes=10)


def test_sinusoid_maml_runs_with_every_entry(tmp_path, monkeypatch):
    results = run_task(tmp_path, monkeypatch, "sinusoid_maml", 10, load=small_sinusoid)
    assert {r["steps_per_epoch"] for r in results["runs"]} == {2}


def small_digits(data_dir=None):
    splits = data.digits(data_dir, image=True)
    return dataclasses.replace(splits, train=splits.train.take(24), train_examples=24,
                               validation=splits.validation.take(16), test=splits.test.take(16))


@pytest.mark.slow
def test_digits_resnet8_runs_with_every_entry(tmp_path, monkeypatch):
    run_task(tmp_path, monkeypatch, "digits_resnet8_igt", 12, load=small_digits)


def small_sentiment(data_dir=None):
    x, y = igt_data.synthetic_sentiment_arrays(60)
    return data.from_arrays((x[20:], y[20:]), (x[:20], y[:20]))


@pytest.mark.slow
def test_synthetic_sentiment_runs_with_every_entry(tmp_path, monkeypatch):
    run_task(tmp_path, monkeypatch, "synthetic_sentiment_bilstm", 16, load=small_sentiment)


@pytest.mark.heavy
def test_miniimagenet_maml_runs_in_the_runner(tmp_path, monkeypatch):
    """One entry with the Mini-ImageNet network (5 inner steps, 84×84) on
    small pickled splits (about 45 s here); all entries in the test below."""
    write_miniimagenet(tmp_path)
    load = lambda data_dir=None: maml.miniimagenet(data_dir, 4, 2, 2)
    run_task(tmp_path / "out", monkeypatch, "miniimagenet_maml", 2, load=load,
             data_dir=str(tmp_path), optimizers=["adam_ita"])


@pytest.mark.slow
def test_miniimagenet_maml_runs_with_every_entry(tmp_path, monkeypatch):
    write_miniimagenet(tmp_path)
    load = lambda data_dir=None: maml.miniimagenet(data_dir, 4, 2, 2)
    run_task(tmp_path / "out", monkeypatch, "miniimagenet_maml", 2, load=load, data_dir=str(tmp_path))


@pytest.mark.slow
def test_cifar10_resnet56_task_runs_every_entry_on_a_stand_in_model(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from tests.test_compare_expectigrad_tasks import with_stand_in

    with_stand_in(monkeypatch, "cifar10_resnet56", (32, 32, 3), 10)
    with tfds.testing.mock_data(num_examples=16):
        run_task(tmp_path, monkeypatch, "cifar10_resnet56", 8)


@pytest.mark.heavy
def test_cifar10_resnet56_runs_with_every_entry(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=16):
        run_task(tmp_path, None, "cifar10_resnet56", 8)


def cifar_batch():
    import tensorflow_datasets as tfds

    task = TASKS["cifar10_resnet56"]
    with tfds.testing.mock_data(num_examples=8):
        splits = task.load(None)
        train = splits.train.enumerate().map(
            lambda i, ex: task.augment(*ex, tf.stack([tf.constant(0, tf.int64), i]))
        ).batch(4)
        images, labels = next(iter(train))
        test_images, _ = next(iter(splits.test.batch(4)))
    return images, labels, test_images


def test_cifar10_resnet56_reads_tfds_standardised():
    images, labels, test_images = cifar_batch()
    assert images.shape == test_images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
    for batch in (images, test_images):
        np.testing.assert_allclose(np.mean(batch, axis=(1, 2, 3)), 0.0, atol=1e-4)
    assert labels.shape == (4,)


@pytest.mark.heavy
def test_cifar10_resnet56_takes_a_step():
    """ResNet-56 compiles and takes an IGT step (45 s to 2 min here)."""
    images, labels, _ = cifar_batch()
    task = TASKS["cifar10_resnet56"]
    model = task.build_model()
    model.compile(optimizer=km.IGT(keras.optimizers.SGD(0.1)), loss=task.loss, jit_compile=False)
    loss = model.train_on_batch(images, labels)
    assert np.isfinite(loss)


@pytest.mark.slow
def test_imdb_bilstm_runs_with_every_entry(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=16):
        run_task(tmp_path, None, "imdb_bilstm", 8)
