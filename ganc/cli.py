"""``ganc`` command line. Each command lives in a module of ``ganc.commands`` that
defines ``register(subparsers)``; heavy imports happen inside the command functions so
``ganc --help`` stays fast. Expected failures (bad arguments, a user error, a store that
cannot be reached) print one line and exit 2, without a traceback; ``GANC_DEBUG=1``
prints the traceback too. Any other exception is a bug and shows its traceback."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

from . import __version__, commands
from .errors import GancError, one_line
from .store.retry import transient


class UsageError(GancError):
    """A bad command line, refused by argparse: ``prog`` is the (sub)command."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as one line (``ganc translate: error: --batch-size:
    0 is out of range: must be >= 1``) instead of usage text and an exit."""

    def error(self, message):
        if message.startswith("argument "):
            message = message[len("argument "):]
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ganc",
        description="Compress image-to-image GANs: GAN Compression supernet search and "
                    "local-density pruning agents, on Ray.")
    parser.add_argument("--version", action="version", version=f"ganc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def _fail(prog: str, message: str) -> int:
    if os.environ.get("GANC_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        return _fail(e.prog, str(e))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prog = f"ganc {args.command}"
    try:
        return int(args.func(args) or 0)
    except GancError as e:
        return _fail(prog, str(e))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not transient(e):
            raise                        # a bug: its traceback
        # a network failure that escaped the store's own error (after its retries)
        return _fail(prog, f"network error: {one_line(e, limit=300)}")


if __name__ == "__main__":
    sys.exit(main())
