"""A pruned model in the run folder: where it goes (``prune/p<target>...``), the commit
unit that writes it (weights, deployed files, model card) and reading it back."""
from __future__ import annotations

import copy
import json
from typing import Optional

from ..deployfiles import write_deploy_files
from ..errors import GancError
from ..nn.pruned import PrunedResnetGenerator
from ..profile import count_macs, count_params
from ..store import MANIFEST, torch_bytes
from ..weights import cpu_state, read_state_dict

STAGE = "prune"


class PruneError(GancError):
    """A pruning run that failed."""


def export_prefix(pc, target: float) -> str:
    """``prune/p<target>`` plus a tag per setting off the default, in this order:
    ``-mobile`` (prune.base_model mobile), ``-nolds``, ``-nopeer``, ``-nod``, ``-adaptG``
    (prune.lr > 0: G's weights adapt in the agents' phase), ``-crop<N>`` (prune.crop_size N
    > 0) and ``-<prune.tag>`` (free-form), so the variants of a comparison sit side by side
    in one run (``prune/p0.5-nolds-adaptG-crop128-long``)."""
    tag = "".join(t for t, on in (("-mobile", pc.base_model == "mobile"),
                                  ("-nolds", not pc.use_lds),
                                  ("-nopeer", not pc.peer_feedback),
                                  ("-nod", not pc.prune_d),
                                  ("-adaptG", pc.lr > 0),
                                  (f"-crop{int(pc.crop_size)}", pc.crop_size > 0),
                                  (f"-{pc.tag}", bool(pc.tag))) if on)
    return f"{STAGE}/p{float(target):g}{tag}"


def variant_config_key(prefix: str) -> str:
    """Where the config a pruned variant ran with is kept: ``prune/configs/<folder>.yaml``
    (``prune/config.yaml`` is the latest prune's, whichever variant that was)."""
    return f"{STAGE}/configs/{prefix.rsplit('/', 1)[-1]}.yaml"


def export_pruned(run, prefix: str, G, D, card: dict, size: int,
                  files: Optional[dict] = None) -> dict:
    """State dicts, ONNX / torch.export files and the model card of a pruned generator
    under ``prefix``, committed as a unit (:meth:`ganc.store.Store.commit_unit`: the
    manifest last); with ``files`` they are added there for the caller to commit with
    the rest of the unit. Returns the card."""
    G = copy.deepcopy(G).cpu().eval()
    macs = count_macs(G, (1, G.input_nc, size, size))
    card = {**card, **G.description(), "macs": int(macs), "params": int(count_params(G)),
            "macs_convention": "torchprofile", "input_size": size,
            "rebuild": "ganc.prune.PrunedResnetGenerator.from_description(model.json)"}
    unit = {} if files is None else files
    unit["model.pt"] = torch_bytes(cpu_state(G.state_dict(), clone=True))
    if D is not None:
        unit["net_D.pt"] = torch_bytes(cpu_state(D.state_dict(), clone=True))
        card["netD_widths"] = list(getattr(D, "widths", []))
    card.update(write_deploy_files(run, prefix, G, G.input_nc, size, latency_repeats=3,
                                   files=unit))
    unit["model.json"] = card
    if files is None:
        run.commit_unit(prefix, unit)
    return card


def read_pruned_unit(run, prefix: str) -> dict:
    """The manifest of the pruned model committed at ``prefix``; a PruneError when there
    is none (never written, or a write cut short: its files are not trusted)."""
    manifest = run.read_unit(prefix)
    if manifest is None:
        raise PruneError(f"no complete pruned model at {run.url(prefix)} (no "
                         f"{MANIFEST}); run the prune stage again")
    return manifest


def load_pruned(run, prefix: str):
    """Rebuild an exported pruned generator (strict weights, ``weights_only``) from its
    committed unit (files checked against the manifest)."""
    manifest = read_pruned_unit(run, prefix)
    card = json.loads(run.read_unit_file(prefix, "model.json", manifest))
    G = PrunedResnetGenerator.from_description(card)
    G.load_state_dict(read_state_dict(run.read_unit_file(prefix, "model.pt", manifest),
                                      name=run.url(f"{prefix}/model.pt")), strict=True)
    return G.eval(), card


__all__ = ["STAGE", "PruneError", "export_prefix", "export_pruned", "read_pruned_unit",
           "load_pruned", "variant_config_key"]
