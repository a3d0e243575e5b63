"""What the benches that read an existing run share: its command-line arguments and its
context (the run's config and recorded placement)."""
from __future__ import annotations


def add_run_args(ap) -> None:
    """``--config`` (required), ``--set KEY=VALUE`` (repeatable), ``--store``, ``--run-id``."""
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--store")
    ap.add_argument("--run-id")


def open_run(args):
    """(config as given, context of the run it names: the run's recorded placement, so the
    eval size is the one the run used)."""
    from ganc.config import load_config
    from ganc.context import open_context
    cfg = load_config(args.config, args.overrides, args.store)
    if args.run_id:
        cfg.store.run_id = args.run_id
    return cfg, open_context(cfg, None)
