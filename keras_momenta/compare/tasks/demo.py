"""The default task: one representative of each paper against Adam and heavy
ball, on MNIST-1D generated offline (README's first command)."""

from keras_momenta.compare import data
from keras_momenta.compare.models import mlp
from keras_momenta.compare.tasks import Task

DEMO_OPTIMIZERS = ("expectigrad", "hb_ita", "m_svag", "am1_sgd_ii", "adam", "sgd_momentum")

TASKS = [
    Task(
        name="mnist1d_mlp",
        paper="all",
        stands_for="the package at a glance (no single figure)",
        description="MNIST-1D (generated offline), MLP 40-100-100-10, batch 100",
        load=data.mnist1d,
        build_model=lambda: mlp(40, (100, 100)),
        epochs=30,
        batch_size=100,
        optimizers=DEMO_OPTIMIZERS,
        scale="reduced",
    ),
]
