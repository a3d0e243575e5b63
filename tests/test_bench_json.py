"""`bench/*.py --json` prints one JSON object on stdout and nothing else."""
from __future__ import annotations

import importlib.util
import json
import sys

from .helpers import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_search_throughput_json_is_the_only_thing_on_stdout(monkeypatch, capsys):
    bench = _load("search_throughput")

    def measure(args):              # what Ray, Tune and the progress lines print meanwhile
        print("== Status ==  Trial status: 4 TERMINATED")
        print("(FidActor pid=1) scoring", file=sys.stdout)
        return {"ratio": 1.5, "configs": args.configs}

    monkeypatch.setattr(bench, "_measure", measure)
    out = bench.main(["--json", "--configs", "3"])
    captured = capsys.readouterr()
    assert json.loads(captured.out) == out == {"ratio": 1.5, "configs": 3}
    assert captured.out.count("\n") == 1
    assert "Trial status" in captured.err and "FidActor" in captured.err
