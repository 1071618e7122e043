"""Continuing training: `fit` in pieces against one `fit`, for every optimizer.

Users call `fit` repeatedly (epoch loops, notebooks, fine-tuning). Every
optimizer of the package keeps all its state across `fit` calls; those whose
answer is not the training point (IGT, AM1/AM2-SGD option II) end each `fit`
with the answer in the model. With `km.callbacks.SwapEvaluationWeights` the
next `fit` puts the training point back and goes on exactly; without it, its
first gradient is taken at the answer. This prints, for a small regression
(an MLP, 4 epochs of 8 batches), the final loss of one `fit(epochs=4)` and of
four `fit(epochs=1)` calls with and without the callback:

    python benchmarks/continue_fit.py
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_momenta as km  # noqa: E402

OPTIMIZERS = {
    "Keras SGD (momentum 0.9)": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "Keras Adam": lambda: keras.optimizers.Adam(0.01),
    "Expectigrad": lambda: km.Expectigrad(0.01),
    "M-SSD": lambda: km.MSSD(0.005),
    "M-SVAG": lambda: km.MSVAG(0.05),
    "ADAM*": lambda: km.AdamStar(0.01),
    "IGT (SGD)": lambda: km.IGT(keras.optimizers.SGD(0.05)),
    "HB-ITA (c=0.1)": lambda: km.IGT(keras.optimizers.SGD(0.05, momentum=0.9), 0.1),
    "Adam-ITA (c=0.1)": lambda: km.IGT(keras.optimizers.Adam(0.01), 0.1),
    "AM1-SGD option I": lambda: km.AM1SGD(0.05, 0.9, 5, option="I"),
    "AM1-SGD option II": lambda: km.AM1SGD(0.05, 0.9, 5),
    "AM2-SGD option I": lambda: km.AM2SGD(0.05, 0.9, 5, option="I", seed=1),
    "AM2-SGD option II": lambda: km.AM2SGD(0.05, 0.9, 5, seed=1),
}


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 8)).astype("float32")
    w = rng.normal(size=(8, 1))
    y = (np.tanh(x @ w) + 0.3 + 0.1 * rng.normal(size=(256, 1))).astype("float32")
    return x, y


def train(make_optimizer, x, y, pieces, callbacks=()):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=make_optimizer(), loss="mse")
    for epochs in pieces:
        model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0, callbacks=list(callbacks))
    return model.evaluate(x, y, verbose=0), model.get_weights()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", nargs="*", default=list(OPTIMIZERS))
    args = parser.parse_args(argv)
    x, y = data()
    print("| optimizer | loss, one fit(epochs=4) | four fit(epochs=1), no callback | "
          "relative difference | four fit(epochs=1) with SwapEvaluationWeights |")
    print("|---|---|---|---|---|")
    for name in args.optimizers:
        make = OPTIMIZERS[name]
        one, one_weights = train(make, x, y, [4])
        plain, _ = train(make, x, y, [1] * 4)
        swapped, swapped_weights = train(make, x, y, [1] * 4, [km.callbacks.SwapEvaluationWeights()])
        identical = all(np.array_equal(a, b) for a, b in zip(one_weights, swapped_weights))
        print(
            f"| {name} | {one:.5f} | {plain:.5f} | {abs(plain - one) / one:.2%} | "
            f"{swapped:.5f} ({'bit-identical' if identical else 'DIFFERENT'}) |"
        )


if __name__ == "__main__":
    main()
