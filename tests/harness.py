"""The parts of a Keras optimizer step that every optimizer shares, in NumPy.

`KerasSemantics` wraps a paper reference with Keras's documented behaviour
around `update_step`: loss-scale unscaling, gradient accumulation (mean over
the accumulated micro-steps, learning-rate schedules evaluated at the
micro-step count), clipping (`clipnorm`, `global_clipnorm`, `clipvalue`),
decoupled weight decay before the update, and the model-variable EMA.
"""

import numpy as np


class KerasSemantics:
    def __init__(
        self,
        reference,
        learning_rate,
        weight_decay=None,
        decay_mask=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
    ):
        self.reference = reference
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.decay_mask = decay_mask
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.loss_scale_factor = loss_scale_factor
        self.accumulation = gradient_accumulation_steps or 1
        self.calls = 0
        self.applied = 0
        self.accumulated = None
        self.ema = None

    def _lr(self):
        lr = self.learning_rate
        return float(lr(self.calls)) if callable(lr) else float(lr)

    def step(self, params, grads):
        params = [np.asarray(p, np.float64) for p in params]
        grads = [np.asarray(g, np.float64) for g in grads]
        if self.loss_scale_factor:
            grads = [g / self.loss_scale_factor for g in grads]
        if self.accumulated is None:
            self.accumulated = [np.zeros_like(g) for g in grads]
        self.accumulated = [a + g for a, g in zip(self.accumulated, grads)]
        lr = self._lr()
        self.calls += 1
        if self.calls % self.accumulation:
            return self._track_ema(params)
        grads = [a / self.accumulation for a in self.accumulated]
        self.accumulated = None
        grads = self._clip(grads)
        if self.weight_decay:
            mask = self.decay_mask or [True] * len(params)
            params = [
                p - lr * self.weight_decay * p if decays else p
                for p, decays in zip(params, mask)
            ]
        params = self.reference.step(params, grads, lr)
        self.applied += 1
        return self._track_ema(params)

    def _clip(self, grads):
        if self.clipnorm:
            return [g * min(1.0, self.clipnorm / max(np.linalg.norm(g), 1e-300)) for g in grads]
        if self.global_clipnorm:
            norm = np.sqrt(sum(np.sum(g**2) for g in grads))
            return [g * min(1.0, self.global_clipnorm / max(norm, 1e-300)) for g in grads]
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def _track_ema(self, params):
        if self.use_ema:
            if self.ema is None:
                self.ema = [p.copy() for p in params]
            else:
                m = self.ema_momentum
                self.ema = [m * e + (1 - m) * p for e, p in zip(self.ema, params)]
        return params


SHAPES = {"scalar": (), "vector": (7,), "matrix": (4, 5), "kernel4d": (3, 3, 2, 4)}


def gradient_stream(shapes, steps, seed=0):
    """Gradients with exact zeros, whole-zero stretches and sign changes."""
    rng = np.random.default_rng(seed)
    stream = []
    for t in range(steps):
        grads = []
        for shape in shapes:
            g = rng.normal(size=shape) * rng.choice([0.1, 1.0, 10.0])
            g = np.where(rng.random(size=shape) < 0.2, 0.0, g)
            if t % 17 < 3:  # some early steps have no signal at all
                g = np.zeros(shape)
            grads.append(np.asarray(g, np.float64))
        stream.append(grads)
    return stream


def initial_params(shapes, seed=1):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.normal(size=s), np.float64) for s in shapes]
