"""Building a generator from a name (+ channel config) and loading its weights.

A folder holding ``model.json`` (a released GAN Compression model, or a ganc model card)
supplies the architecture, so ``--netG`` and ``--config`` may be left out.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import torch.nn as nn

from . import nn as gnn
from .errors import ConfigError, WeightsError
from .families import family_of
from .space import get_space
from .weights import load_weights


@dataclass
class GeneratorSpec:
    netG: str
    config: Optional[str] = None
    ngf: int = 64
    norm: str = "instance"
    input_nc: int = 3
    output_nc: int = 3
    dropout: float = 0.0
    arch: dict = field(default_factory=dict)   # extra builder arguments (pruned widths)

    def label(self) -> str:
        return self.netG + (f" ({self.config})" if self.config else "")


def read_model_json(weights_path) -> dict:
    """The ``model.json`` beside a weights file, or {} when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights_path)), "model.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def spec_from_card(card: dict) -> GeneratorSpec:
    """The architecture a model card (model.json) describes."""
    return resolve_spec(card=card)


def resolve_spec(netG=None, config=None, ngf=None, norm=None, weights=None,
                 space=None, card: Optional[dict] = None,
                 config_flag: str = "--config") -> GeneratorSpec:
    """Fill what the command line left out from a model card (by default the model.json
    beside the weights). ``config_flag``: the option that gives the channel config (named
    in the errors)."""
    if card is None:
        card = read_model_json(weights) if weights else {}
    netG = netG or card.get("netG")
    if not netG:
        raise ConfigError("--netG is required (no model.json beside the weights names it); "
                          "choose from: " + ", ".join(gnn.GENERATORS))
    if netG not in gnn.GENERATORS:
        raise ConfigError(f"--netG {netG!r} is not a generator; choose from: "
                          + ", ".join(gnn.GENERATORS))
    config = config or card.get("config_str") or card.get("config")
    fam = family_of(netG)
    if config is not None:
        config = str(fam.parse_config(config))
        if space:
            get_space(space).validate(config)
    if netG.startswith("sub_") and config is None:
        raise ConfigError(f"{config_flag} is required for {netG} (e.g. {fam.example_config})")
    arch = {k: card[k] for k in ("widths", "kind") if k in card}
    if netG == "pruned_resnet" and "widths" not in arch:
        raise ConfigError("pruned_resnet weights need the model.json written beside them "
                          "(it holds the pruned widths)")
    default = fam.defaults()
    arch.update(fam.card_arch(card))
    return GeneratorSpec(netG, config, int(ngf or card.get("ngf", 64)),
                         norm or card.get("norm") or default["norm"],
                         int(card.get("input_nc") or default["input_nc"]),
                         int(card.get("output_nc", 3)), float(card.get("dropout", 0.0)), arch)


def _local_weights(source: str) -> Optional[str]:
    """A local path of a weights file given as a path or ``file://`` URL (else None)."""
    if not source or ("://" in source and not source.startswith("file://")):
        return None
    path = source[len("file://"):] if source.startswith("file://") else source
    return os.path.abspath(os.path.expanduser(path))


def teacher_spec(m) -> GeneratorSpec:
    """The teacher's architecture from a :class:`ganc.config.ModelConfig`: ``teacher``,
    ``teacher_ngf``, ``norm``, ``dropout`` and, for a sub-network teacher
    (``sub_mobile_resnet_9blocks``, ``sub_mobile_spade``: any loadable generator is a
    teacher, a released compressed one included), its channel config: ``teacher_config``,
    else the ``config_str`` of the model.json beside a local ``teacher_weights`` (as the
    released GAN Compression models ship). One line when it cannot be found."""
    netG = m.teacher
    if netG not in gnn.GENERATORS:
        raise ConfigError(f"model.teacher {netG!r} is not a generator; choose from: "
                          + ", ".join(gnn.GENERATORS))
    if netG.startswith("super_"):
        raise ConfigError(f"model.teacher {netG!r} is a supernet, not one network: export one "
                          "of its sub-networks (ganc export) and use that as the teacher")
    fam = family_of(netG)
    config = (m.teacher_config or "").strip() or None
    takes_config = netG.startswith("sub_")
    local = _local_weights(m.teacher_weights)
    arch = {}
    if netG == "pruned_resnet":             # its widths live in the model card beside it
        card = read_model_json(local) if local and os.path.isfile(local) else {}
        arch = {k: card[k] for k in ("widths", "kind") if k in card}
        if "widths" not in arch:
            raise ConfigError(f"model.teacher pruned_resnet needs the model.json written "
                              f"beside its weights (it holds the pruned widths); none beside "
                              f"{m.teacher_weights or 'model.teacher_weights (empty)'}")
    if config and not takes_config:
        raise ConfigError(f"model.teacher_config {config!r} is set but model.teacher {netG!r} "
                          "takes no channel config (only the sub-networks sub_mobile_* do); "
                          "clear it")
    if takes_config and not config:
        card = read_model_json(local) if local and os.path.isfile(local) else {}
        config = card.get("config_str") or card.get("config")
        if not config:
            raise ConfigError(
                f"model.teacher {netG} needs its channel config: set model.teacher_config "
                "(e.g. 16_16_32_16_32_32_16_16)"
                + (f"; no model.json beside {m.teacher_weights} names one"
                   if m.teacher_weights else ""))
        where = f"config_str of the model.json beside {m.teacher_weights}"
    else:
        where = "model.teacher_config"
    if config is not None:
        try:
            config = str(fam.parse_config(config))
        except ConfigError as e:
            hint = (" (YAML reads an unquoted 16_16_32_... as one integer: quote it)"
                    if config.isdigit() else "")
            raise ConfigError(f"{where}: {e}{hint}") from None
    default = fam.defaults()
    return GeneratorSpec(netG, config, int(m.teacher_ngf), m.norm or default["norm"],
                         default["input_nc"], 3, float(m.dropout), arch)


def build_generator(spec: GeneratorSpec) -> nn.Module:
    return gnn.build(spec.netG, config=spec.config, ngf=spec.ngf, norm=spec.norm,
                     input_nc=spec.input_nc, output_nc=spec.output_nc, dropout=spec.dropout,
                     **spec.arch)


def as_runnable(model: nn.Module, spec: GeneratorSpec) -> nn.Module:
    """A module whose forward(x) runs the chosen network (super + config -> its sub-net)."""
    if spec.netG.startswith("super_"):
        return gnn.extract_subnet(model, spec.config or model.largest)
    return model


def load_generator(weights, spec: GeneratorSpec) -> nn.Module:
    """Build ``spec``, load ``weights`` strictly, return a runnable eval-mode module."""
    model = build_generator(spec)
    load_weights(model, weights, arch=spec.label())
    return as_runnable(model, spec).eval()


__all__ = ["GeneratorSpec", "resolve_spec", "teacher_spec", "spec_from_card", "build_generator", "load_generator", "as_runnable",
           "read_model_json", "WeightsError"]
