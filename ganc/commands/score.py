"""``ganc score``: FID / KID of one generator (a zoo model) on a run config's held-out
splits, by the report stage's own scoring (:func:`ganc.report.score_models`), without a
run store and without Ray."""
from __future__ import annotations

import json
import os
import sys
import time

from ..errors import ConfigError, WeightsError
from ..log import Progress
from ._args import count
from ._runconfig import load_run_config

QUIET_S = 3.0        # scoring that ends sooner prints no progress


def register(sub):
    p = sub.add_parser(
        "score", help="FID / KID of a model on a run's held-out splits, as the report scores",
        description="Score one generator (e.g. a zoo model: zoo/<dataset>/<name>/model.pt, "
                    "its architecture read from the model.json beside it, as `ganc "
                    "translate` does) on the splits of a run config exactly as the report "
                    "stage does: the same inputs (data.search_split / data.val_split drawn "
                    "with data.split_seed, or the data.eval_split folder) translated at "
                    "data.crop_size, the same real set (data.fid_real) and real-statistics "
                    "cache key, the same KID settings (fid.kid, fid.kid_subset_size). One "
                    "line per split; no run store and no Ray are needed.")
    p.add_argument("--config", help="the run's YAML config (configs/horse2zebra_real.yaml, "
                                    "...); default: built-in defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set data.root=PATH (repeatable)")
    p.add_argument("--weights", required=True, metavar="PATH",
                   help="the generator's state dict (model.pt; read with weights_only=True)")
    p.add_argument("--split", action="append", default=[], metavar="SPLIT",
                   help="a split the report scores: search (data.search_split), val "
                        "(data.val_split), or eval (the report's eval split: val when "
                        "data.val_split holds one out, else the data.eval_split folder, "
                        "which may also be named); repeatable (default: eval)")
    p.add_argument("--store", metavar="URL",
                   help="where the real statistics are cached: folder, file:///path or "
                        "s3://bucket/prefix (default: store.url of the config, where the "
                        "run's report cached them)")
    p.add_argument("--netG", help="generator, when no model.json beside --weights names it "
                                  "(`ganc nets` lists them)")
    p.add_argument("--channels", metavar="CONFIG",
                   help="channel config of a sub/super net when no model.json beside "
                        "--weights gives it, e.g. 16_16_32_16_32_32_16_16")
    p.add_argument("--ngf", type=count, help="base width when no model.json gives it "
                                             "(default 64)")
    p.add_argument("--norm", choices=["instance", "batch", "none"],
                   help="normalization when no model.json gives it")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the model, its MACs and size, and per split "
                        "fid, kid, kid_std, n_fake, n_real, label (and the card's FID)")
    p.set_defaults(func=cmd_score)


def chosen_splits(data, asked: list[str]) -> dict:
    """``{split: report flag of score_models}`` of the ``--split`` values (default: the
    eval split); one line naming the field that does not hold a split out."""
    from ..data.splits import (SEARCH, VAL, eval_split, has_search_split,
                               has_val_split)  # deferred: torch
    from ..report import report_splits  # deferred: torch
    splits, evaluated = report_splits(data), eval_split(data)
    out: dict = {}
    for name in asked or ["eval"]:
        key = evaluated if name == "eval" else name
        if key in splits:
            out[key] = splits[key]
        elif name == SEARCH and not has_search_split(data):
            raise ConfigError(f"--split search: data.search_split is 0, so this config holds "
                              f"out no search split (its choices were made on {evaluated})")
        elif name == VAL and not has_val_split(data):
            raise ConfigError(f"--split val: data.val_split is 0, so this config holds out no "
                              f"val split (its eval split is {evaluated!r}: --split eval)")
        elif has_val_split(data) and name == data.eval_split:
            raise ConfigError(f"--split {name}: the report scores val (data.val_split "
                              f"{data.val_split:g} holds it out of {data.train_split}), not "
                              f"the data.eval_split folder {name!r}; use --split val")
        else:
            raise ConfigError(f"--split {name!r} is not a split this config scores; choose "
                              f"from: {', '.join(splits)}, eval (= {evaluated})")
    return out


def _card_hw(card: dict):
    """(height, width) the card's model was measured at (``input_size``), else None."""
    v = card.get("input_size")
    if isinstance(v, int):
        return v, v
    if isinstance(v, (list, tuple)) and len(v) >= 2 and all(isinstance(d, int) for d in v):
        return int(v[-2]), int(v[-1])
    return None


def _progress(net, total: int, label: str):
    """A forward hook on ``net`` counting the images translated; its progress lines
    (stderr) start once scoring has taken :data:`QUIET_S` seconds. Returns the handle."""
    bar, state = Progress(total, label), {"done": 0, "shown": False}

    def hook(module, inputs, output):
        state["done"] += int(inputs[0].shape[0])
        if state["shown"] or time.perf_counter() - bar.t0 >= QUIET_S:
            state["shown"] = True
            bar.update(min(state["done"], total))
    return net.register_forward_hook(hook)


def _line(split: str, r: dict, macs: float, hw) -> str:
    kid = (f"  KID {r['kid']:.6f} +- {r['kid_std']:.6f}" if r.get("kid") is not None else "")
    miou = f"  mIoU {r['miou']:.2f}" if r.get("miou") is not None else ""
    card = (f"; the card records FID {r['card_fid']:.4f}"
            if isinstance(r.get("card_fid"), (int, float)) else "")
    size = f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"
    return (f"{split}: FID {r['fid']:.4f}{kid}{miou}  ({r['n_fake']} images against "
            f"{r['n_real']} real; model MACs {macs / 1e9:.3f}G at {size}{card})")


def cmd_score(args):
    from ..cluster import local_machine  # deferred: torch
    from ..context import open_run, resolve_data  # deferred: torch
    from ..metrics.splits import scoring_split  # deferred: torch, torch_fidelity
    from ..modelio import load_generator, read_model_json, resolve_spec  # deferred: torch
    from ..profile import count_macs  # deferred: torch
    from ..report import input_shape, score_models  # deferred: torch

    cfg = load_run_config(args)
    splits = chosen_splits(cfg.data, args.split)           # before any file is read
    if not os.path.isfile(args.weights):
        raise WeightsError(f"--weights {args.weights}: file not found")
    card = read_model_json(args.weights)
    spec = resolve_spec(args.netG, args.channels, args.ngf, args.norm, card=card,
                        config_flag="--channels")
    net = load_generator(args.weights, spec)
    shape = input_shape(cfg, spec.netG)
    hw, at = tuple(shape[-2:]), _card_hw(card)
    if at is not None and at != hw:
        print(f"note: the card's model was measured at {at[0]}x{at[1]}; scoring at "
              f"data.crop_size: {hw[0]}x{hw[1]} (the generator is fully convolutional)",
              file=sys.stderr, flush=True)
    store = open_run(cfg)[0]
    data = resolve_data(cfg, store, local_machine())
    root = data.local()
    by_split = card.get("fid_by_split") if isinstance(card.get("fid_by_split"), dict) else {}
    results = {}
    for split, report in splits.items():
        held = scoring_split(cfg, root, data.name, report=report)
        n_in, n_real = len(held.inputs), len(held.real.paths())
        handle = _progress(net, n_in, f"[score] {split}: translate and score")
        try:
            sc = score_models(cfg, held, store, {"model": net})["model"]
        finally:
            handle.remove()
        results[split] = {"fid": sc.fid, "kid": sc.kid_mean, "kid_std": sc.kid_std,
                          "n_fake": sc.n_fake, "n_real": n_real, "label": held.label,
                          **({"miou": sc.miou} if sc.miou is not None else {}),
                          "card_fid": by_split.get(split)}
    macs = count_macs(net, shape)
    if args.json:
        print(json.dumps({"weights": args.weights, "netG": spec.netG, "config": spec.config,
                          "macs": macs, "macs_convention": "torchprofile", "size": list(hw),
                          "store": store.url(), "splits": results}, sort_keys=True))
        return 0
    for split, r in results.items():
        print(_line(split, r, macs, hw))
    return 0
