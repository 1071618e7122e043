"""TF official-models training at the answer of an output-point optimizer.

IGT's answer is its true iterate θ and that of AM1-SGD and AM2-SGD with
option II an average of iterates, not the point where gradients are taken, which the model holds
while it trains. official-models trains with orbit, which has no callbacks;
these are the hooks that evaluate and export the answer:

* `Trainer`: official-models' `base_trainer.Trainer` that swaps the answer
  into the model for each evaluation and the training point back after it;
* `AnswerCheckpointing`: an orbit action that saves a checkpoint of the model
  at its answer (under `model_dir/answer_checkpoints`), from which
  official-models' export scripts export it;
* `run_experiment`: `official.core.train_lib.run_experiment` with both.

For optimizers without an answer of their own (the other classes of
`keras_momenta.official`, Keras's), they do what official-models does.
Needs tf-models-official (this module imports it).
"""

import os

import tensorflow as tf
from official.core import base_trainer, train_lib, train_utils


def answer_optimizer(optimizer):
    """The optimizer with an answer (`swap_answer_weights`) inside
    official-models' loss-scaling or EMA wrappers, or None."""
    while optimizer is not None and not hasattr(optimizer, "swap_answer_weights"):
        optimizer = getattr(optimizer, "inner_optimizer", None) or getattr(optimizer, "_optimizer", None)
    return optimizer


def swap_answer(optimizer, model):
    """Exchange the answer and the model's values (a second call restores them)."""
    optimizer = answer_optimizer(optimizer)
    if optimizer is not None:
        optimizer.swap_answer_weights(model.trainable_variables)


class Trainer(base_trainer.Trainer):
    """official-models' trainer, evaluating at the optimizer's answer (IGT's θ,
    the averages of AM1/AM2-SGD option II)."""

    def eval_begin(self):
        swap_answer(self.optimizer, self.model)
        return super().eval_begin()

    def eval_end(self, *args, **kwargs):
        try:
            return super().eval_end(*args, **kwargs)
        finally:
            swap_answer(self.optimizer, self.model)


class AnswerCheckpointing:
    """An orbit action: saves the model at its answer to
    `export_dir/answer_checkpoints` (`tf.train.Checkpoint(model=...)`, what
    official-models' export reads), numbered by the training step."""

    def __init__(self, export_dir, model, optimizer, max_to_keep=1):
        self._model, self._optimizer = model, optimizer
        self.directory = os.path.join(export_dir, "answer_checkpoints")
        self._manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model), self.directory, max_to_keep, checkpoint_name="answer"
        )

    def __call__(self, output=None):
        swap_answer(self._optimizer, self._model)
        try:
            self._manager.save(checkpoint_number=self._optimizer.iterations)
        finally:
            swap_answer(self._optimizer, self._model)


def run_experiment(distribution_strategy, task, mode, params, model_dir, eval_actions=(), **kwargs):
    """`official.core.train_lib.run_experiment` evaluating at the answer
    (`Trainer`) and saving it after each evaluation (`AnswerCheckpointing`).
    Other arguments are passed on."""
    with distribution_strategy.scope():
        trainer = train_utils.create_trainer(
            params,
            task,
            train="train" in mode,
            evaluate="eval" in mode,
            checkpoint_exporter=train_utils.maybe_create_best_ckpt_exporter(params, model_dir),
            trainer_cls=Trainer,
        )
    actions = [*eval_actions, AnswerCheckpointing(model_dir, trainer.model, trainer.optimizer)]
    return train_lib.run_experiment(
        distribution_strategy=distribution_strategy,
        task=task,
        mode=mode,
        params=params,
        model_dir=model_dir,
        trainer=trainer,
        eval_actions=actions,
        **kwargs,
    )
