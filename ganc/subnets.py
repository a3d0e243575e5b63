"""The run's supernet (``supernet/final.pt``) and the sub-networks sliced from it.

Shared by the stages that read it (search, prune, fine-tune, export): the checkpoint
loaded with its search space and hash (:func:`load_supernet`), the supernet a payload
describes (:func:`supernet_of`), a plain sub-network sliced from it (:func:`subnet_from`),
the closed-form cost of its sub-networks (:func:`cost_model`, :func:`input_shape`) and the
config the run chose (:func:`chosen_config`).
"""
from __future__ import annotations

import hashlib
from typing import Optional

from . import nn as gnn
from .errors import ConfigError, GancError
from .families import family_of
from .space import ChannelConfig, SearchSpace
from .store import torch_from_bytes


class SearchError(GancError):
    """A search that cannot start or did not produce results."""


def supernet_of(payload: dict):
    """The supernet a checkpoint payload (``supernet/final.pt``, ``finetune/final.pt``)
    describes, with its weights loaded strictly, in eval mode."""
    model = gnn.build(payload["netG"], ngf=int(payload["ngf"]),
                      norm=payload.get("norm", "instance"),
                      dropout=float(payload.get("dropout", 0.0)),
                      input_nc=int(payload.get("input_nc", 3)),
                      output_nc=int(payload.get("output_nc", 3)))
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.eval()


def load_supernet(run) -> dict:
    """The supernet payload (``supernet/final.pt``) with ``model`` and ``space`` added."""
    key = "supernet/final.pt"
    if not run.exists(key):
        raise SearchError(f"no supernet checkpoint at {run.url(key)}; "
                          "train one first (ganc train-supernet)")
    data = run.read_bytes(key)
    payload = torch_from_bytes(data, run.url(key))
    for field in ("state_dict", "netG", "ngf", "search_space"):
        if field not in payload:
            raise SearchError(f"{run.url(key)} has no {field!r} entry")
    payload["model"] = supernet_of(payload)
    payload["space"] = SearchSpace.from_dict(payload["search_space"])
    payload["sha256"] = hashlib.sha256(data).hexdigest()     # what a resume must match
    return payload


def cost_model(payload: dict, size: int, height: Optional[int] = None):
    """The closed-form cost of the supernet's sub-networks at ``size`` (its family's
    :meth:`~ganc.families.Family.cost_model`; SPADE: ``size`` wide, ``height`` high; default
    square)."""
    return family_of(payload["netG"]).cost_model(payload, size, height)


def input_shape(cost) -> tuple:
    """(1, C, H, W) of one input at a cost model's size."""
    if hasattr(cost, "height"):
        return (1, cost.input_nc, cost.height, cost.width)
    return (1, cost.input_nc, cost.size, cost.size)


def chosen_config(run, config: Optional[str] = None) -> str:
    """``config``, or the best config of the run's search (``best.json``)."""
    if config:
        return str(ChannelConfig.parse(config))
    if not run.exists("best.json"):
        raise ConfigError(f"no best.json in {run.url()}; run `ganc search` first or give "
                          "--subnet-config")
    return str(ChannelConfig.parse(run.get_json("best.json")["config"]))


def subnet_from(run, key: str, config: str):
    """The plain sub-network ``config`` sliced from the supernet weights at ``key``."""
    return gnn.extract_subnet(supernet_of(run.get_torch(key)), config).eval()


__all__ = ["SearchError", "supernet_of", "load_supernet", "cost_model", "input_shape",
           "chosen_config", "subnet_from"]
