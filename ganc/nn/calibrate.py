"""Batch-norm recalibration of a sub-network before it is scored.

A supernet trained with batch norm (the SPADE supernet's modulations) keeps one set of
running statistics for all its sub-networks, estimated on whichever widths training happened
to sample; a given sub-network's activations have other statistics. GAN Compression
therefore re-estimates them before scoring each candidate: it resets them and runs a few
hundred training label maps through the sub-network in train mode without gradients.

:func:`recalibrate_bn` does that. Its default (``momentum=None``) is the cumulative average,
so every calibration batch counts equally and the result does not depend on the batch order;
the reference's first batch sets the statistics and later ones enter as an exponential
average with momentum 0.1 (pass ``momentum=0.1`` for that weighting after a reset).
Recalibrate a copy (``ganc.nn.extract_subnet``) to leave the supernet's statistics alone;
calling it on the supernet with ``config=...`` works too but resets every channel.
"""
from __future__ import annotations

import itertools
from typing import Iterable, Optional

import torch
import torch.nn as nn

from ..errors import ConfigError


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, momentum: Optional[float] = None,
                   **forward_kw) -> int:
    """Reset the running statistics of every batch norm of ``model`` and re-estimate them
    on ``batches`` (tensors, or dicts whose ``A`` is the input), forward in train mode with
    no gradients; dropout stays off. ``forward_kw`` goes to ``model`` (e.g. ``config=`` for
    a supernet). The model's mode and the layers' momentum are restored afterwards.
    Returns the number of inputs seen (0, with nothing changed, for a model without batch
    norm)."""
    norms = batch_norms(model)
    if not norms:
        return 0
    batches = iter(batches)
    first = next(batches, None)
    if first is None:                         # nothing reset: fail before touching the model
        raise ConfigError("batch-norm recalibration got no batches")
    saved_momentum = [m.momentum for m in norms]
    was_training = model.training
    device = next(model.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = momentum
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    seen = 0
    try:
        for batch in itertools.chain([first], batches):
            x = batch["A"] if isinstance(batch, dict) else batch
            model(x.to(device), **forward_kw)
            seen += int(x.shape[0])
    finally:
        for m, mom in zip(norms, saved_momentum):
            m.momentum = mom
        model.train(was_training)
    return seen


__all__ = ["recalibrate_bn", "batch_norms"]
