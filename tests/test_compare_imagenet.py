"""The ImageNet tasks (Expectigrad §6 Fig. 4, IGT §6.1 Fig. 4, AM-SGD §6.2
Fig. 4 and Table 2): the missing-archives error, TFDS's mock of the manual
`imagenet2012`, the preprocessing, the models against the papers' sizes,
and one short epoch of every entry of each task.

ImageNet-size models are costly on a CPU: the default suite builds each and
takes one eager step, and runs each task in the runner with its first entry
and a one-layer stand-in model, every entry of it under `slow` (so in CI);
the real models run every entry under `heavy`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_momenta.compare import TASKS, data, models, vision
from keras_momenta.compare.optimizers import OPTIMIZERS
from keras_momenta.compare.tasks import imagenet
from tests.test_compare_expectigrad_tasks import layers_of, one_step, run_task, with_stand_in

NAMES = [task.name for task in imagenet.TASKS if task.scale == "full"]


def test_without_archives_the_error_says_where_to_put_them(tmp_path):
    with pytest.raises(data.MissingDataError) as raised:
        TASKS["imagenet_resnet50_igt"].load(str(tmp_path))
    message = str(raised.value)
    assert "manual_dir" in message
    assert str(tmp_path / "downloads" / "manual") in message
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert "--data-dir" in message


def test_mock_data_and_preprocessing(tmp_path):
    """TFDS's mock of imagenet2012 needs no manual_dir (it makes random
    images of random sizes)."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        splits = vision.imagenet(str(tmp_path))
        raw = list(splits.train.take(2))
        evaluated = list(splits.validation) + list(splits.test)
    assert not (tmp_path / "downloads" / "manual").exists()
    for image, label in raw:
        assert image.dtype == tf.uint8 and image.shape[-1] == 3 and 0 <= int(label) < 1000
    for image, _ in evaluated:
        assert image.shape == (224, 224, 3) and image.dtype == tf.float32
    image = raw[0][0]
    crops = [vision.random_resized_crop(image, 0, tf.constant(seed, tf.int64))[0].numpy()
             for seed in ([1, 2], [1, 2], [3, 4])]
    assert crops[0].shape == (224, 224, 3)
    np.testing.assert_array_equal(crops[0], crops[1])
    assert not np.array_equal(crops[0], crops[2])
    # Evaluation: a 256×512 image keeps its centre (the left/right quarters
    # are cut); normalisation is per channel.
    wide = tf.concat([tf.zeros([256, 128, 3]), 255 * tf.ones([256, 256, 3]),
                      tf.zeros([256, 128, 3])], axis=1)
    centre, _ = vision.center_crop(tf.cast(wide, tf.uint8), 0)
    np.testing.assert_allclose(centre.numpy()[0, 0], (1 - np.array(vision.IMAGENET_MEAN))
                               / vision.IMAGENET_STD, rtol=1e-5)


def test_tasks_have_the_papers_settings():
    tasks = {name: TASKS[name] for name in NAMES}
    assert {task.name for task in imagenet.TASKS} == set(NAMES) | set(REDUCED)
    mobilenet = tasks["imagenet_mobilenetv2"]
    assert (mobilenet.paper, mobilenet.epochs) == ("expectigrad", 300)
    assert mobilenet.optimizers == ("expectigrad",) + (("yogi",) if "yogi" in OPTIMIZERS else ())
    igt = tasks["imagenet_resnet50_igt"]
    assert (igt.paper, igt.batch_size, igt.schedule) == ("igt", 1024, "linear")
    assert igt.optimizers == ("sgd", "sgd_momentum", "adam", "ita", "hb_ita", "adam_ita")
    for name in ("imagenet_resnet50_amsgd", "imagenet_resnet152_amsgd"):
        task = tasks[name]
        assert (task.paper, task.epochs, task.batch_size) == ("amortized_nesterov", 90, 256)
        assert (task.schedule, task.decay_at) == ("step", (1 / 3, 2 / 3))
        assert task.optimizers == ("sgd", "nesterov_sgd", "am1_sgd_ii", "am2_sgd")
    for task in tasks.values():
        assert task.load is vision.imagenet and task.augment is vision.random_resized_crop
        assert set(task.optimizers) <= set(OPTIMIZERS) and task.scale == "full"


# Keras's models against the papers' sizes: ResNet-50 25.6M and ResNet-152
# 60.2M (torchvision's counts of He et al.'s nets; Keras's ResNets have
# convolution biases), MobileNetV2 3.4M (Sandler et al., Table 4).
MODELS = {
    "resnet50": (vision.resnet50, 25_636_712, 25.6e6, 1 + 3 * 16 + 4, 0),
    "resnet152": (vision.resnet152, 60_419_944, 60.2e6, 1 + 3 * 50 + 4, 0),
    "mobilenet_v2": (vision.mobilenet_v2, 3_538_984, 3.4e6, 1 + 17 + 16 + 1, 17),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_have_the_papers_sizes_and_train(name):
    build, count, paper, convolutions, depthwise = MODELS[name]
    model = build()
    assert model.count_params() == count and abs(count - paper) / paper < 0.05
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    assert len(layers_of(model, keras.layers.Conv2D)) == convolutions
    assert len(layers_of(model, keras.layers.DepthwiseConv2D)) == depthwise
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert len(model.losses) == len(kernels) > 0  # weight decay on every kernel
    one_step(model, "sgd", (224, 224, 3), 1000, batch=1)


@pytest.mark.parametrize("every_entry", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", NAMES)
def test_tasks_run_in_the_runner_on_a_stand_in_model(tmp_path, monkeypatch, name, every_entry):
    """The task's data, augmentation, schedule and callbacks through the
    runner with a one-layer model: its first entry by default, every entry
    under `slow` (with the real model: `heavy`)."""
    with_stand_in(monkeypatch, name, (224, 224, 3), 1000)
    run_task(name, tmp_path, batch_size=2, mock_examples=2,
             optimizers=None if every_entry else TASKS[name].optimizers[:1])


@pytest.mark.heavy
@pytest.mark.parametrize("name", NAMES)
def test_tasks_run_every_entry_with_the_real_model(tmp_path, name):
    run_task(name, tmp_path, batch_size=2, mock_examples=2)


def test_amsgd_tasks_restart_after_each_drop_as_the_paper_does():
    from keras_momenta.callbacks import RestartOnLearningRateDrop

    for name in ("imagenet_resnet50_amsgd", "imagenet_resnet152_amsgd"):
        (callback,) = TASKS[name].callbacks(None)
        assert isinstance(callback, RestartOnLearningRateDrop)
    assert TASKS["imagenet_resnet50_igt"].callbacks is None


# The reduced stand-ins: MNIST-1D at ten times its size, 1-D networks.
REDUCED = {"mnist1d_mobilenetv2": "imagenet_mobilenetv2", "mnist1d_resnet_igt": "imagenet_resnet50_igt",
           "mnist1d_resnet_amsgd": "imagenet_resnet50_amsgd"}


def test_reduced_tasks_keep_what_each_paper_varies():
    for name, full in REDUCED.items():
        task, paper = TASKS[name], TASKS[full]
        assert (task.scale, task.paper, task.optimizers) == ("reduced", paper.paper, paper.optimizers)
        assert (task.schedule, task.decay_at) == (paper.schedule, paper.decay_at)
        assert task.load is data.mnist1d_large and "reduced" in task.stands_for
    assert TASKS["mnist1d_resnet_igt"].batch_size == 1024
    (restart,) = TASKS["mnist1d_resnet_amsgd"].callbacks(None)
    assert type(restart).__name__ == "RestartOnLearningRateDrop"
    # Expectigrad's Fig. 4 runs Yogi at its recommended step size, 10× Expectigrad's.
    if "yogi" in OPTIMIZERS:
        assert OPTIMIZERS["yogi"].learning_rate == 10 * OPTIMIZERS["expectigrad"].learning_rate


def test_large_mnist1d_is_ten_times_the_default_and_fixed():
    splits = data.mnist1d_large()
    assert splits.train_examples == 36_000
    assert [int(s.cardinality()) for s in (splits.validation, splits.test)] == [4_000, 10_000]
    again = data.mnist1d_arrays(data.MNIST1D_LARGE_SAMPLES)
    first_x, first_y = next(iter(splits.train.batch(5)))
    np.testing.assert_array_equal(first_x.numpy(), again[0][0][:5])
    np.testing.assert_array_equal(first_y.numpy(), again[0][1][:5])
    assert set(np.unique(again[1][1])) == set(range(10))


def test_one_dimensional_networks_have_their_papers_blocks():
    resnet = models.resnet_1d()
    convolutions = layers_of(resnet, keras.layers.Conv1D)
    # Stem, two per block, a projection where the stage halves the length.
    assert [c.filters for c in convolutions] == [16, 16, 16, 32, 32, 32, 64, 64, 64]
    assert len(layers_of(resnet, keras.layers.Add)) == 3 and resnet.name == "resnet8_1d"
    assert models.resnet_1d((3, 3, 3)).name == "resnet20_1d"
    mobilenet = models.mobilenet_v2_1d()
    assert round(mobilenet.count_params(), -3) == 148_000  # as the task describes it
    blocks = sum(count for _, _, count, _ in models.MOBILENET_1D_STAGES)
    assert len(layers_of(mobilenet, keras.layers.DepthwiseConv1D)) == blocks
    # Residuals only between blocks of a stage after its first.
    assert len(layers_of(mobilenet, keras.layers.Add)) == blocks - len(models.MOBILENET_1D_STAGES)
    relu6 = [r for r in layers_of(mobilenet, keras.layers.ReLU) if r.max_value == 6.0]
    assert len(relu6) == 2 + 2 * blocks - 1  # the first stage does not expand
    for model in (resnet, mobilenet):
        assert model.input_shape == (None, 40) and model.output_shape == (None, 10)
        kernels = [v for v in model.trainable_variables if "kernel" in v.path]
        assert len(model.losses) == len(kernels) > 0  # weight decay on every kernel
        one_step(model, "sgd", (40,), 10, batch=4)


@pytest.mark.parametrize("every_entry", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", list(REDUCED))
def test_reduced_tasks_run_in_the_runner(tmp_path, monkeypatch, name, every_entry):
    """The real networks on a small MNIST-1D: the first entry by default,
    every entry under `slow`."""
    monkeypatch.setattr(data, "MNIST1D_LARGE_SAMPLES", 400)
    results = run_task(name, tmp_path, batch_size=64,
                       optimizers=None if every_entry else TASKS[name].optimizers[:1])
    assert {run["steps_per_epoch"] for run in results["runs"]} == {5}  # 288 examples
