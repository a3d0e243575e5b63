"""One batch semantics for any worker count: the global batch, epochs, the LR schedule.

- ``data.batch_size`` is the GLOBAL batch. With W Ray Train workers each takes
  ``batch_size / W`` images of every step's global batch (a one-line error when it does not
  divide). The images of step s are the same whatever W is (:class:`GlobalBatchSampler`).
- An epoch is ``floor(N / batch_size)`` steps over a fresh shuffle of the N training images
  (the < one batch left over is skipped that epoch; the next shuffle differs).
- A training stage runs ``epochs`` epochs at the constant learning rate, then
  ``epochs_decay`` epochs with the rate decaying linearly to 0 (the reference's
  ``nepochs`` / ``nepochs_decay``). ``steps > 0`` replaces the total number of steps
  (smoke tests); the schedule keeps its shape: constant for the first
  ``epochs / (epochs + epochs_decay)`` of them.
- The learning rate is used as given: changing the batch or the worker count does not
  rescale it.

The step counts are computed from the dataset size by the driver, recorded in
``<stage>/schedule.json`` and handed to the workers.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

from ..errors import ConfigError


def linear_decay(step: int, decay_start: int, total_steps: int) -> float:
    """The LR factor of a stage: 1 until ``decay_start``, then linearly down to 0 at
    ``total_steps``."""
    if step < decay_start or total_steps <= decay_start:
        return 1.0
    return max(0.0, 1.0 - (step - decay_start) / float(total_steps - decay_start))


def decay_start(total_steps: int, epochs: int, epochs_decay: int) -> int:
    """First step of the linear decay: the constant share ``epochs / (epochs +
    epochs_decay)`` of ``total_steps`` (all of them when both are 0)."""
    if epochs + epochs_decay == 0:
        return int(total_steps)
    return int(round(total_steps * epochs / float(epochs + epochs_decay)))


@dataclass(frozen=True)
class Schedule:
    dataset_size: int
    global_batch: int
    workers: int
    worker_batch: int
    steps_per_epoch: int
    epochs: int
    epochs_decay: int
    total_steps: int
    decay_start: int             # first step of the linear decay
    length_from: str             # "epochs" or "steps"

    @property
    def images_per_epoch(self) -> int:
        return self.steps_per_epoch * self.global_batch

    def lr_factor(self, step: int) -> float:
        """1 until ``decay_start``, then linearly down to 0 at ``total_steps``."""
        return linear_decay(step, self.decay_start, self.total_steps)

    def epoch_of(self, step: int) -> float:
        return step / float(self.steps_per_epoch)

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_epoch": self.images_per_epoch}

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        names = cls.__dataclass_fields__
        return cls(**{k: d[k] for k in names})


def make_schedule(section: str, stage_cfg, dataset_size: int, global_batch: int,
                  workers: int) -> Schedule:
    """The schedule of a training stage (``stage_cfg``: epochs, epochs_decay, steps)."""
    global_batch, workers = int(global_batch), int(workers)
    if global_batch < 1:
        raise ConfigError(f"data.batch_size must be at least 1, got {global_batch}")
    if workers < 1:
        raise ConfigError(f"scale.workers must be at least 1, got {workers}")
    if global_batch % workers:
        lower, upper = global_batch - global_batch % workers, \
            global_batch - global_batch % workers + workers
        raise ConfigError(f"data.batch_size {global_batch} is the global batch and must divide "
                          f"evenly over scale.workers={workers} (e.g. "
                          + (f"{lower} or {upper})" if lower else f"{upper})"))
    if dataset_size < global_batch:
        raise ConfigError(f"data.batch_size {global_batch} is larger than the training set "
                          f"({dataset_size} images)")
    epochs, decay, steps = int(stage_cfg.epochs), int(stage_cfg.epochs_decay), \
        int(stage_cfg.steps)
    if epochs < 0 or decay < 0 or steps < 0:
        raise ConfigError(f"{section}.epochs, epochs_decay and steps must be >= 0, got "
                          f"{epochs}, {decay}, {steps}")
    spe = dataset_size // global_batch
    if steps > 0:
        total, source = steps, "steps"
    else:
        total, source = (epochs + decay) * spe, "epochs"
    if total < 1:
        raise ConfigError(f"{section}: epochs + epochs_decay is 0 (and steps is 0): nothing "
                          "to train")
    start = decay_start(total, epochs, decay)
    return Schedule(dataset_size, global_batch, workers, global_batch // workers, spe, epochs,
                    decay, total, start, source)


class GlobalBatchSampler:
    """This rank's share of every global batch from step ``start`` (to ``stop``, or for
    ever): yields lists of ``(index, item_seed)``.

    Epoch e is a permutation of the dataset drawn from (seed, e), the same on every rank;
    step s takes the slice ``[k * B, (k + 1) * B)`` of its epoch's permutation (k = s mod
    steps per epoch) and rank r the ``[r * b, (r + 1) * b)`` part of it. ``item_seed``
    depends on (seed, epoch, position) only, so random augmentation is the same whatever
    the worker count and the DataLoader's process count, and a resumed run continues the
    same stream.
    """

    def __init__(self, dataset_size: int, global_batch: int, rank: int, world: int, seed: int,
                 start: int = 0, stop: Optional[int] = None):
        if global_batch % world:
            raise ConfigError(f"data.batch_size {global_batch} must divide evenly over "
                              f"{world} workers")
        if dataset_size < global_batch:
            raise ConfigError(f"data.batch_size {global_batch} is larger than the training "
                              f"set ({dataset_size} images)")
        self.n, self.B, self.rank, self.world = int(dataset_size), int(global_batch), rank, world
        self.b = self.B // world
        self.seed, self.start, self.stop = int(seed), int(start), stop
        self.per_epoch = max(1, self.n // self.B)
        self._perm_epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> list:
        if self._perm_epoch != epoch:
            self._perm = list(range(self.n))
            random.Random(self.seed * 1_000_003 + epoch * 7919 + 17).shuffle(self._perm)
            self._perm_epoch = epoch
        return self._perm

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an endless sampler has no length")
        return max(0, int(self.stop) - self.start)

    def __iter__(self) -> Iterator[list]:
        step = self.start
        while self.stop is None or step < self.stop:
            epoch, k = divmod(step, self.per_epoch)
            perm = self._permutation(epoch)
            lo = k * self.B + self.rank * self.b
            yield [(perm[lo + j], (self.seed * 1_000_003 + epoch) * 1_000_033 + lo + j)
                   for j in range(self.b)]
            step += 1


__all__ = ["Schedule", "make_schedule", "GlobalBatchSampler"]
