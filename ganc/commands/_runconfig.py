"""Arguments shared by every command that runs a stage on a run config."""
from __future__ import annotations

from ..config import load_config, set_field


def add_run_args(p, workers: bool = True) -> None:
    p.add_argument("--config", help="YAML config (configs/demo.yaml, configs/facades.yaml, ...); "
                                    "default: built-in defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set distill.steps=200 (repeatable)")
    p.add_argument("--store", help="artifact store: folder, file:///path or s3://bucket/prefix "
                                   "(default: store.url of the config)")
    p.add_argument("--run-id", help="run folder runs/<RUN_ID> (default: store.run_id or name)")
    if workers:
        p.add_argument("--workers", type=int, help="Ray Train workers (scale.workers)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def load_run_config(args):
    """The RunConfig of ``--config``, ``--set``, ``--store``, ``--run-id``, ``--workers``."""
    cfg = load_config(args.config, args.overrides, args.store)
    if getattr(args, "run_id", None):
        cfg.store.run_id = args.run_id
    set_flags(cfg, args, workers="scale.workers")
    return cfg


def set_flags(cfg, args, **fields) -> None:
    """Copy the flags given (``--budget-macs`` for ``budget_macs="search.budget_macs"``)
    into their config fields, checked against the ranges the config declares."""
    for attr, path in fields.items():
        value = getattr(args, attr, None)
        if value is not None:
            set_field(cfg, path, value, "--" + attr.replace("_", "-"))
