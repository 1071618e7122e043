"""Expectigrad in a Keras workflow: fit, save, reload, resume.

    .venv/bin/python examples/expectigrad_quickstart.py [--epochs 10]

Trains an MLP on MNIST-1D (generated offline), saves the model with its
optimizer state to a `.keras` file, reloads it in safe mode without
`custom_objects` and continues training from where it stopped.
"""

import argparse
import pathlib
import tempfile

import keras
import tensorflow as tf

import keras_momenta as km
from keras_momenta.compare.data import mnist1d_arrays
from keras_momenta.compare.models import mlp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = mnist1d_arrays()
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(100)
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(1000)
    model = mlp(40, (100, 100))
    model.compile(
        optimizer=km.Expectigrad(learning_rate=1e-3, beta=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=True,  # XLA is not chosen automatically on CPU
    )
    model.fit(train, epochs=args.epochs, verbose=2)

    path = pathlib.Path(tempfile.mkdtemp()) / "mnist1d_expectigrad.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    print(f"saved and reloaded {path}: optimizer {type(restored.optimizer).__name__}, "
          f"{int(restored.optimizer.iterations.numpy())} steps taken")
    restored.fit(train, epochs=1, verbose=2)
    loss, accuracy = restored.evaluate(test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
