"""keras_momenta.official inside TF official-models: registration, YAML
configs, and the `resnet_imagenet` image-classification experiment.

Not collected by the default run: these need tf-models-official, which pins
an older TensorFlow than the package's own environment. The slow test
`tests/test_package.py::test_the_official_models_environment_installs_and_trains`
builds that environment and runs this file in it.
"""

import os
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf  # tests/conftest.py makes two logical CPUs for MirroredStrategy
import yaml

from keras_momenta import official as km_official  # noqa: E402

km_official.register_optimizers()

import official.vision  # noqa: E402,F401  (registers the vision experiments)
from keras_momenta import official_models  # noqa: E402
from official.core import exp_factory, task_factory, train_utils  # noqa: E402
from official.modeling.optimization import OptimizationConfig, OptimizerFactory  # noqa: E402
from official.modeling.optimization import optimizer_factory  # noqa: E402

# The state each optimizer keeps per variable, with its default settings.
SLOTS = {
    "expectigrad": {"sum", "count", "momentum"},
    "mssd": {"momentum"},
    "msvag": {"momentum", "variance"},
    "adamstar": {"momentum", "variance"},
    "igt": {"estimate", "true_param", "step_taken", "inner_momentum"},
    "am1sgd": {"average", "block_offset"},
    "am2sgd": {"point_table", "table_mean"},
}
# The slot that holds an optimizer's answer, where it is not the model's point.
ANSWER_SLOTS = {"igt": "true_param", "am1sgd": "average", "am2sgd": "table_mean"}
# Settings of the experiment runs beyond the defaults.
EXPERIMENT_SETTINGS = {
    "igt": {"inner_optimizer": {"type": "sgd", "sgd": {"momentum": 0.9}}, "tail_fraction": 0.5},
    "am1sgd": {"amortization": 3},
    "am2sgd": {"amortization": 3, "seed": 11},
}


def test_register_optimizers_is_idempotent_and_refuses_a_name_taken_by_another_class():
    configs = km_official.register_optimizers()
    assert sorted(configs) == sorted(km_official.OPTIMIZERS)
    for key, optimizer_class in km_official.OPTIMIZERS.items():
        assert optimizer_factory.LEGACY_OPTIMIZERS_CLS[key] is optimizer_class
    taken = dict(optimizer_factory.LEGACY_OPTIMIZERS_CLS)
    try:
        optimizer_factory.LEGACY_OPTIMIZERS_CLS["mssd"] = km_official.MSVAG
        with pytest.raises(ValueError, match="already has an optimizer named 'mssd'"):
            km_official.register_optimizers()
    finally:
        optimizer_factory.LEGACY_OPTIMIZERS_CLS.clear()
        optimizer_factory.LEGACY_OPTIMIZERS_CLS.update(taken)


def test_config_dataclasses_hold_each_class_defaults():
    for key, optimizer_class in km_official.OPTIMIZERS.items():
        defaults = OptimizationConfig().optimizer.as_dict() | {"type": key}
        config = OptimizationConfig({"optimizer": defaults}).optimizer.get().as_dict()
        built = optimizer_class().get_config()
        for name, value in config.items():
            if name == "inner_optimizer":  # IGT's: a name, built as an optimizer
                assert built[name]["class_name"].lower() == value, key
            elif name == "seed" and value is None:  # AM2-SGD draws one
                assert isinstance(built[name], int), key
            elif name in built:
                assert built[name] == value, (key, name)
        # official-models passes the learning rate itself (IGT's is its inner's).
        assert set(built) - set(config) == ({"learning_rate"} if key != "igt" else set()), key

YAML = """
optimizer:
  type: {type}
  {type}: {settings}
learning_rate:
  type: cosine
  cosine: {{initial_learning_rate: 0.1, decay_steps: 100}}
warmup:
  type: linear
  linear: {{warmup_steps: 10, warmup_learning_rate: 0.0}}
"""

YAML_SETTINGS = {
    "expectigrad": {"beta": 0.5, "momentum": "inner", "global_clipnorm": 1.0},
    "mssd": {"momentum": 0.8, "clipnorm": 2.0},
    "msvag": {"momentum": 0.7, "released_code": True},
    "adamstar": {"momentum": 0.6, "clipvalue": 0.5},
    "igt": {"tail_fraction": 0.5, "nonnegative_momentum": True, "global_clipnorm": 1.0},
    "am1sgd": {"momentum": 0.8, "amortization": 3, "option": "I"},
    "am2sgd": {"momentum": 0.8, "amortization": 4, "seed": 3},
}


@pytest.mark.parametrize("key", sorted(km_official.OPTIMIZERS))
def test_a_yaml_config_builds_the_optimizer_with_its_schedule_and_clipping(key):
    settings = YAML_SETTINGS[key]
    config = OptimizationConfig()
    config.override(yaml.safe_load(YAML.format(type=key, settings=settings)), is_strict=True)
    factory = OptimizerFactory(config)
    optimizer = factory.build_optimizer(factory.build_learning_rate())
    assert type(optimizer) is km_official.OPTIMIZERS[key]
    built = optimizer.get_config()
    for name, value in settings.items():
        assert built[name] == value, name
    # Linear warmup from 0 to the cosine schedule's value at step 10.
    learning_rate = optimizer.learning_rate
    at_warmup_end = 0.1 * 0.5 * (1 + np.cos(np.pi * 10 / 100))
    np.testing.assert_allclose(float(learning_rate(5)), at_warmup_end / 2, rtol=1e-6)


def _readme_section_blocks(language):
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## TF official-models\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.S | re.M)


def test_the_readme_section_runs_and_its_yaml_builds_the_optimizer():
    (code,) = _readme_section_blocks("py")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    chosen = namespace["experiment"].trainer.optimizer_config.optimizer
    assert chosen.type == "expectigrad" and chosen.expectigrad.beta == 0.9

    (text,) = _readme_section_blocks("yaml")
    experiment = exp_factory.get_exp_config("resnet_imagenet")
    experiment.override(yaml.safe_load(text), is_strict=True)
    factory = OptimizerFactory(experiment.trainer.optimizer_config)
    optimizer = factory.build_optimizer(factory.build_learning_rate())
    assert type(optimizer) is km_official.MSVAG
    assert (optimizer.momentum, optimizer.global_clipnorm) == (0.9, 1.0)


def _write_image_records(path, examples, classes, seed):
    """ImageNet-format TFRecords (JPEG image, integer label) of random images."""
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(path) as writer:
        for _ in range(examples):
            image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            feature = {
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.encode_jpeg(image).numpy()])
                ),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(rng.integers(classes))])
                ),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="module")
def image_records(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    paths = {split: str(directory / f"{split}.tfrecord") for split in ("train", "validation")}
    _write_image_records(paths["train"], 32, 10, seed=0)
    _write_image_records(paths["validation"], 16, 10, seed=1)
    return paths


def _resnet_experiment(key, records, mirrored):
    """`resnet_imagenet` shrunk to run in seconds: ResNet-10 on 32×32 images,
    four steps with official-models' cosine schedule, warmup and global
    clipping; under the default strategy in mixed float16 with loss scaling,
    under MirroredStrategy with EMA. (official-models 2.20 itself refuses
    EMA under the default strategy, and fails with EMA and float16 together,
    for every optimizer: its `ExponentialMovingAverage.apply_gradients`
    lacks the argument `experimental_aggregate_gradients` that
    `LossScaleOptimizer` passes.)"""
    experiment = exp_factory.get_exp_config("resnet_imagenet")
    data = {"global_batch_size": 8, "dtype": "float32" if mirrored else "float16"}
    experiment.override(
        {
            "runtime": {"mixed_precision_dtype": "float32" if mirrored else "float16", "loss_scale": "dynamic"},
            "task": {
                "model": {
                    "num_classes": 10,
                    "input_size": [32, 32, 3],
                    "backbone": {"type": "resnet", "resnet": {"model_id": 10}},
                },
                "train_data": {"input_path": records["train"], "shuffle_buffer_size": 8, **data},
                "validation_data": {"input_path": records["validation"], "drop_remainder": False, **data},
            },
            "trainer": {
                "train_steps": 4,
                "validation_steps": 2,
                "validation_interval": 2,
                "steps_per_loop": 2,
                "summary_interval": 2,
                "checkpoint_interval": 2,
                "optimizer_config": {
                    "optimizer": {"type": key, key: {"global_clipnorm": 5.0, **EXPERIMENT_SETTINGS.get(key, {})}},
                    "learning_rate": {
                        "type": "cosine",
                        "cosine": {"initial_learning_rate": 0.01, "decay_steps": 4},
                    },
                    "warmup": {"type": "linear", "linear": {"warmup_steps": 1}},
                    # EMA would average the training points, not the answer.
                    "ema": {"average_decay": 0.9} if mirrored and key not in ANSWER_SLOTS else None,
                },
            },
        },
        is_strict=True,
    )
    return experiment


@pytest.mark.parametrize("mirrored", [False, True], ids=["default_strategy", "mirrored"])
@pytest.mark.parametrize("key", sorted(km_official.OPTIMIZERS))
def test_resnet_imagenet_trains_and_evaluates(key, mirrored, image_records, tmp_path, mirrored_strategy):
    experiment = _resnet_experiment(key, image_records, mirrored)
    strategy = mirrored_strategy if mirrored else tf.distribute.get_strategy()
    model_dir = str(tmp_path / "model")
    with strategy.scope():
        task = task_factory.get_task(experiment.task, logging_dir=model_dir)
    official_models.run_experiment(
        distribution_strategy=strategy,
        task=task,
        mode="train_and_eval",
        params=experiment,
        model_dir=model_dir,
        run_post_eval=True,
    )
    checkpoint = tf.train.latest_checkpoint(model_dir)
    assert checkpoint.endswith("-4"), checkpoint
    reader = tf.train.load_checkpoint(checkpoint)
    names = list(reader.get_variable_to_shape_map())
    # The optimizer's own state was created, trained and saved: its slots
    # (beside EMA's `average`) and its step counter, inside official-models'
    # EMA or loss-scaling wrapper.
    slots = {}
    for name in names:
        match = re.search(r"\.OPTIMIZER_SLOT/optimizer/(?:\w+_optimizer/)?(\w+)/", name)
        if match:
            slots.setdefault(match.group(1), []).append(name)
    ema = experiment.trainer.optimizer_config.ema is not None
    assert set(slots) == SLOTS[key] | ({"average"} if ema else set()), sorted(slots)
    assert all(np.any(reader.get_tensor(name) != 0) for name in slots[min(SLOTS[key])])
    # (IGT's inner optimizer counts the same steps.)
    iterations = [name for name in names if re.fullmatch(r"optimizer/(\w+/)*iter/\.ATTRIBUTES/VARIABLE_VALUE", name)]
    assert len(iterations) == 1 + (key == "igt")
    assert all(int(reader.get_tensor(name)) == 4 for name in iterations)
    assert os.listdir(os.path.join(model_dir, "validation")), "no validation summaries written"
    # The answer, saved for export after each evaluation: IGT's θ, AM1-SGD's x̃.
    answer = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(model_dir, "answer_checkpoints")))
    # The stem's kernel: the backbone is the model's first layer with weights
    # (the trainer's checkpoint names the backbone itself; exports read `model`).
    kernel = "backbone/layer_with_weights-0/kernel"
    saved = answer.get_tensor("model/layer_with_weights-0/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    trained = reader.get_tensor(f"{kernel}/.ATTRIBUTES/VARIABLE_VALUE")
    if key in ANSWER_SLOTS:
        slot = f"/{ANSWER_SLOTS[key]}/"
        (answer_slot,) = [n for n in names if n.startswith(f"{kernel}/.OPTIMIZER_SLOT/") and slot in n]
        np.testing.assert_array_equal(saved, reader.get_tensor(answer_slot))
        assert np.max(np.abs(saved - trained)) > 1e-6
    else:
        # (official-models' EMA swaps by adding and subtracting: round-off.)
        np.testing.assert_allclose(saved, trained, rtol=1e-6, atol=1e-7)


# Each optimizer's config with settings away from the defaults.
FIRST_STEP_SETTINGS = {
    "expectigrad": {"beta": 0.5, "momentum": "inner"},
    "mssd": {"momentum": 0.8},
    "msvag": {"momentum": 0.7},
    "adamstar": {"momentum": 0.6},
    "igt": EXPERIMENT_SETTINGS["igt"],
    "am1sgd": {"momentum": 0.8, "amortization": 2},
    "am2sgd": {"momentum": 0.8, "amortization": 3, "seed": 9},
}


def _keras_3_optimizer(official_optimizer, settings):
    """The Keras 3 class of `official_optimizer` with the same config."""
    import keras

    import keras_momenta as km

    if isinstance(official_optimizer, km_official.IGT):
        inner = official_optimizer.inner_optimizer.get_config()
        assert type(official_optimizer.inner_optimizer).__name__ == "SGD"
        sgd = keras.optimizers.SGD(0.01, momentum=float(inner["momentum"]), nesterov=inner["nesterov"])
        return km.IGT(sgd, tail_fraction=settings["tail_fraction"], nonnegative_momentum=settings["nonnegative_momentum"])
    return getattr(km, type(official_optimizer).__name__)(learning_rate=0.01, **settings)


@pytest.mark.parametrize("key", sorted(km_official.OPTIMIZERS))
def test_the_same_config_takes_the_same_first_steps_in_official_models_and_keras_3_fit(
    key, image_records, tmp_path
):
    """One optimizer config, one ResNet (same initial weights), one batch:
    three steps of official-models' `ImageClassificationTask.train_step`
    with the optimizer its `OptimizerFactory` builds, and three steps of
    Keras 3 `model.fit` with the Keras 3 class built from the same config,
    through the same network exported as a SavedModel and loaded as a
    trainable `keras.layers.TFSMLayer`."""
    import keras

    experiment = _resnet_experiment(key, image_records, mirrored=False)
    experiment.override(
        {
            "runtime": {"mixed_precision_dtype": "float32"},
            "task": {
                "losses": {"label_smoothing": 0.0, "l2_weight_decay": 0.0},
                "train_data": {"dtype": "float32"},
            },
            "trainer": {
                "optimizer_config": {
                    "optimizer": {key: {"global_clipnorm": None, **FIRST_STEP_SETTINGS[key]}},
                    "learning_rate": {"type": "constant", "constant": {"learning_rate": 0.01}},
                    "warmup": {"type": None},
                }
            },
        },
        is_strict=True,
    )
    task = task_factory.get_task(experiment.task)
    model = task.build_model()
    images, labels = next(iter(task.build_inputs(experiment.task.train_data)))
    steps = 3

    # The initial network, in training mode (batch statistics), for Keras 3.
    module = tf.Module()
    module.model = model
    module.train_forward = tf.function(
        lambda x: model(x, training=True), input_signature=[tf.TensorSpec(images.shape, tf.float32)]
    )
    tf.saved_model.save(module, str(tmp_path / "resnet"))

    initial = {v.name.replace("/", "_"): v.numpy() for v in model.trainable_variables}
    factory = OptimizerFactory(experiment.trainer.optimizer_config)
    official_optimizer = factory.build_optimizer(factory.build_learning_rate())
    train_step = tf.function(lambda: task.train_step((images, labels), model, official_optimizer))
    for _ in range(steps):
        train_step()
    # Keras 3 `fit` ends with the answer in the model (IGT's θ): compare
    # answers. TFSMLayer names each weight after the variable, "_" for "/".
    variables = model.trainable_variables
    answers = official_models.answer_optimizer(official_optimizer)
    values = answers.evaluation_weights(variables) if answers is not None else variables
    official_weights = {v.name.replace("/", "_"): a.numpy() for v, a in zip(variables, values)}
    assert len(official_weights) == len(model.trainable_variables)

    settings = experiment.trainer.optimizer_config.optimizer.get().as_dict()
    settings = {name: value for name, value in settings.items() if value is not None and name != "name"}
    keras_optimizer = _keras_3_optimizer(official_optimizer, settings)
    layer = keras.layers.TFSMLayer(str(tmp_path / "resnet"), call_endpoint="train_forward", trainable=True)
    keras_model = keras.Sequential([keras.Input(images.shape[1:], batch_size=images.shape[0]), layer])
    keras_model.compile(
        optimizer=keras_optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat(steps)
    keras_model.fit(batches, epochs=1, verbose=0)
    assert int(keras_optimizer.iterations) == steps == int(official_optimizer.iterations)

    assert sorted(v.name for v in layer.trainable_weights) == sorted(official_weights)
    # Three steps move every kernel beyond the tolerance below.
    assert not any(
        np.allclose(official_weights[n], initial[n], rtol=2e-4, atol=2e-6) for n in initial if "kernel" in n
    )
    for variable in layer.trainable_weights:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable),
            official_weights[variable.name],
            rtol=2e-4,
            atol=2e-6,
            err_msg=variable.name,
        )


def test_the_trainer_evaluates_at_igt_answer_and_trains_on_at_the_training_point(image_records, tmp_path):
    experiment = _resnet_experiment("igt", image_records, mirrored=False)
    experiment.override({"runtime": {"mixed_precision_dtype": "float32"}, "task": {"train_data": {"dtype": "float32"}}})
    task = task_factory.get_task(experiment.task)
    trainer = train_utils.create_trainer(
        experiment, task, train=True, evaluate=True, trainer_cls=official_models.Trainer
    )
    trainer.train(tf.constant(2))
    variables = trainer.model.trainable_variables
    training = [v.numpy() for v in variables]
    answer = [a.numpy() for a in trainer.optimizer.evaluation_weights(variables)]
    assert max(np.max(np.abs(a - t)) for a, t in zip(answer, training)) > 1e-6
    trainer.eval_begin()
    for v, a in zip(variables, answer):
        np.testing.assert_array_equal(v.numpy(), a)
    trainer.eval_end()
    for v, t in zip(variables, training):
        np.testing.assert_array_equal(v.numpy(), t)
