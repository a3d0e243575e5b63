"""The networks a prune starts from: the original generator (the run's teacher) with a
discriminator, and the network pruned (the teacher, or the supernet's largest
sub-network)."""
from __future__ import annotations

import torch

from .. import nn as gnn
from ..config import RunConfig
from ..errors import ConfigError
from ..modelio import build_generator, teacher_spec
from ..subnets import supernet_of
from ..train.supernet import load_teacher, resolve_teacher
from ..train.teacher import build_discriminator

PRUNABLE = ("ResnetGenerator", "MobileResnetGenerator", "SubMobileResnetGenerator")


def build_teacher(cfg: RunConfig, run=None):
    """(G, D, source) -- the original generator and a discriminator to start from.

    G is the run's teacher, found as the supernet stage finds it (``model.teacher_weights``,
    else ``teacher/final.pt``, with the architecture recorded there); without either, a
    randomly initialised ``model.teacher`` (demo and tests only). What is initialised at
    random is drawn from ``seed`` (the same networks in every process, so a resumed
    target continues with the original it started from)."""
    m = cfg.model
    D = _seeded(cfg.seed, lambda: build_discriminator(cfg, 6 if cfg.data.kind == "aligned"
                                                      else 3))
    if m.teacher_weights or (run is not None and run.exists("teacher/final.pt")):
        ref = resolve_teacher(cfg, run)
        G, source = load_teacher(ref, cfg.store.endpoint_url), ref["source"]
        if not m.teacher_weights:
            final = run.get_torch("teacher/final.pt")
            if "netD" in final:
                try:
                    D.load_state_dict(final["netD"], strict=True)
                except RuntimeError:
                    pass  # a D of another shape: start D fresh
    else:
        G = _seeded(cfg.seed, lambda: gnn.init_weights(build_generator(teacher_spec(m))))
        source = "random-init"
    kind = type(G).__name__
    if kind not in PRUNABLE:
        raise ConfigError(f"teacher {kind} ({source}): pruning supports resnet_9blocks, "
                          "resnet_6blocks and mobile_resnet_9blocks")
    return G.eval(), D, source


def _seeded(seed: int, build):
    """``build()`` with torch's random numbers drawn from ``seed`` (the caller's stream
    left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


def build_base(cfg: RunConfig, run, teacher):
    """(network to prune, its name): the teacher (``prune.base_model: teacher``) or the
    supernet's largest sub-network (``mobile``: ``supernet/final.pt`` of the run, the
    mobile network the search's candidates are cut from)."""
    if cfg.prune.base_model == "teacher":
        return teacher, "teacher"
    key = "supernet/final.pt"
    if run is None or not run.exists(key):
        raise ConfigError(f"prune.base_model: mobile needs the supernet; "
                          f"{run.url(key) if run is not None else key} does not exist")
    sup = supernet_of(run.get_torch(key))
    if not hasattr(sup, "largest"):
        raise ConfigError(f"prune.base_model: mobile: {type(sup).__name__} has no largest "
                          "sub-network")
    G = gnn.extract_subnet(sup, sup.largest).eval()
    if type(G).__name__ not in PRUNABLE:
        raise ConfigError(f"prune.base_model: mobile: cannot prune {type(G).__name__}")
    return G, "mobile"


__all__ = ["PRUNABLE", "build_teacher", "build_base"]
