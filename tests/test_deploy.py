"""Deployment: ONNX / torch.export artifacts equal eager, the runtimes' CLI, the latency
table (validated against whole networks) and searches under a latency budget."""
from __future__ import annotations

import io
import json
import math
import os
import random

import pytest
import torch

from ganc import nn as gnn
from ganc.cli import main as ganc
from ganc.errors import ConfigError
from ganc.deploy import deploy_artifacts, module_onnx_bytes
from ganc.onnxgraph import retarget_onnx
from ganc.onnxrun import OnnxError, OnnxModule, load_onnx
from ganc.search.cost import BudgetError, CostModel
from ganc.search.latency import (LatencyBudget, LatencyTable, check_budget_ms,
                                 check_latency_budget, segments, table_key)
from ganc.search.latency_build import build_and_validate, build_table
from ganc.space import ChannelConfig, SearchSpace

from .helpers import REPO

PRUNED_WIDTHS = {"stem": 4, "down1": 6, "trunk": 8, "blocks": [3, 5, 2, 4, 4, 4, 1, 2, 3],
                 "up1": 5, "up2": 3}
# Every generator kind that `ganc export` (sub mobile) and `ganc prune` (pruned resnet /
# pruned mobile) write.
EXPORTED_KINDS = {
    "sub_mobile": lambda: gnn.build("sub_mobile_resnet_9blocks", config="8_4_8_4_8_4_8_4"),
    "pruned_resnet": lambda: gnn.build("pruned_resnet", widths=PRUNED_WIDTHS),
    "pruned_mobile": lambda: gnn.build("pruned_resnet", widths=PRUNED_WIDTHS, kind="mobile"),
}


def _randomize(net):
    """Non-trivial weights (a default init can hide a dropped bias)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()


# ---------------------------------------------------------------- export
@pytest.mark.parametrize("kind", sorted(EXPORTED_KINDS))
def test_onnx_and_pt2_equal_eager_for_every_exported_kind(kind):
    net = _randomize(EXPORTED_KINDS[kind]())
    art = deploy_artifacts(net, 3, 32)
    card = art["card"]
    assert card["onnx"]["opset"] == 20 and card["onnx"]["max_abs_diff_vs_eager"] <= 1e-4
    onnx = OnnxModule(art["onnx"], threads=1)
    program = torch.export.load(io.BytesIO(art["pt2"])).module()
    g = torch.Generator().manual_seed(1)
    # batch and both sides are dynamic: shapes the export never saw
    for shape in [(1, 3, 32, 32), (3, 3, 24, 40), (1, 3, 64, 48)]:
        x = torch.rand(*shape, generator=g) * 2 - 1
        with torch.no_grad():
            ref = net(x)
            assert (onnx(x) - ref).abs().max() <= 1e-4, shape
            assert (program(x) - ref).abs().max() <= 1e-4, shape


def test_retargeted_onnx_equals_a_fresh_export_without_exporting(monkeypatch):
    """The latency table's shortcut: one export per layer kind, other widths by replacing
    the initializers; must give the other network exactly, with no export call."""
    import ganc.onnxgraph as og
    template = module_onnx_bytes(gnn.build("sub_mobile_resnet_9blocks",
                                           config="8_4_8_4_8_4_8_4").eval(),
                                 torch.zeros(1, 3, 32, 32))

    def no_export(*a, **k):
        raise AssertionError("retarget_onnx fell back to a full export")
    monkeypatch.setattr(og, "module_onnx_bytes", no_export)
    for cfg in ("16_8_12_4_16_8_4_12", "4_4_4_4_4_4_4_4"):
        net = _randomize(gnn.build("sub_mobile_resnet_9blocks", config=cfg))
        x = torch.rand(1, 3, 48, 48) * 2 - 1
        out = OnnxModule(retarget_onnx(template, net, x), threads=1)(x)
        with torch.no_grad():
            assert (out - net(x)).abs().max() <= 1e-4, cfg


def test_bad_onnx_runtime_and_budget_inputs_fail_in_one_line(tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a protobuf")
    with pytest.raises(OnnxError) as e:
        load_onnx(bad)
    assert str(bad) in str(e.value) and "not an ONNX model" in str(e.value)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from PIL import Image
    Image.new("RGB", (32, 32), (20, 90, 200)).save(imgs / "a.png")
    cases = [
        (["translate", "--onnx", str(bad), "--input", str(imgs), "--output",
          str(tmp_path / "o")], "not an ONNX model"),
        (["translate", "--weights", str(bad), "--input", str(imgs), "--output",
          str(tmp_path / "o")], "not an ONNX model"),
        (["profile", "--netG", "resnet_6blocks", "--runtime", "tensorrt"],
         "--runtime 'tensorrt' is not one of: eager, onnxruntime, inductor"),
        (["profile", "--netG", "resnet_6blocks", "--runtime", "inductor", "--device",
          "cuda"], "--runtime inductor runs on the CPU"),
        (["profile", "--netG", "resnet_6blocks", "--threads", "-2"], "--threads"),
        (["search", "--set", "search.budget_ms=0", "--store", str(tmp_path / "s")],
         "search.budget_ms: 0.0 is out of range: must be > 0"),
        (["search", "--set", "search.budget_ms=.nan", "--store", str(tmp_path / "s")],
         "search.budget_ms: nan is not a finite number"),
        (["search", "--budget-ms", "-3", "--store", str(tmp_path / "s")],
         "--budget-ms: -3.0 is out of range: must be > 0"),
        (["latency-table", "--runtime", "tvm"], "--runtime 'tvm'"),
    ]
    for argv, needle in cases:
        assert ganc(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()
    for bad_budget in (0, -1.0, float("nan"), float("inf"), "fast"):
        with pytest.raises(ConfigError):
            check_budget_ms(bad_budget)


def test_translate_runs_an_onnx_export_like_the_weights(tmp_path):
    net = _randomize(gnn.build("sub_mobile_resnet_9blocks", config="8_4_8_4_8_4_8_4"))
    art = deploy_artifacts(net, 3, 32)
    (tmp_path / "model.onnx").write_bytes(art["onnx"])
    torch.save(net.state_dict(), tmp_path / "model.pt")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)          # textured: a flat image makes instance norm
    for i in range(2):                      # amplify rounding noise
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            imgs / f"{i}.png")
    assert ganc(["translate", "--onnx", str(tmp_path / "model.onnx"), "--input", str(imgs),
                 "--output", str(tmp_path / "a"), "--size", "32", "--threads", "1"]) == 0
    assert ganc(["translate", "--weights", str(tmp_path / "model.pt"), "--netG",
                 "sub_mobile_resnet_9blocks", "--config", "8_4_8_4_8_4_8_4", "--input",
                 str(imgs), "--output", str(tmp_path / "b"), "--size", "32"]) == 0
    for name in ("0.png", "1.png"):
        a = np.asarray(Image.open(tmp_path / "a" / name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "b" / name), dtype=int)
        assert np.abs(a - b).max() <= 1          # uint8 rounding only


# What torch.compile did in a child process: frames compiled, graphs, graph breaks, conv
# weights prepacked (what weight freezing does on a oneDNN CPU).
COMPILE_COUNTERS = """
def compile_counters():
    import torch
    from torch._dynamo.utils import counters
    return {"frames_ok": counters["frames"]["ok"],
            "graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values()),
            "weight_packs": sum(v for k, v in counters["inductor"].items()
                                if "weight_pack" in k and k.endswith("_count")),
            "mkldnn": torch.backends.mkldnn.is_available()}
"""

# `ganc profile --runtime inductor` as `python -m ganc` runs it, in a child process, with
# ganc.runtime.runner wrapped: the generator the command builds gets non-trivial weights
# (a default init can hide a dropped bias) before it is compiled, and that compiled
# function, the one the command timed, is then compared with the generator run eagerly
# (one compile in all: inductor's C++ compile is most of this test's cost).
INDUCTOR_CHECK = COMPILE_COUNTERS + """
import json, sys, torch
import ganc.runtime
from ganc.cli import main
torch.set_num_threads(1)
made = {}
real_runner = ganc.runtime.runner

def runner(model, runtime, *args, **kwargs):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)
    made["model"], made["run"] = model, real_runner(model, runtime, *args, **kwargs)
    return made["run"]

ganc.runtime.runner = runner
rc = main(sys.argv[1:])
after = compile_counters()
x = torch.rand(1, 3, 32, 40) * 2 - 1
net = made["model"].eval()
with torch.no_grad():
    y, want = made["run"](x), net(x)
print(json.dumps({"rc": rc, **after}))
print(json.dumps({"max_abs_diff": float((y - want).abs().max()), "shape": list(y.shape),
                  "eager_std": float(want.std()), **compile_counters()}))
"""


def _check_compiled(counters):
    # compiled by inductor as one graph (the runner is not eager), weights frozen
    assert counters["frames_ok"] >= 1 and counters["graphs"] == 1, counters
    assert counters["graph_breaks"] == 0, counters
    if counters["mkldnn"]:
        assert counters["weight_packs"] > 0, counters


@pytest.mark.slow
def test_inductor_runtime_equals_eager_and_profiles():
    """``--runtime inductor``: the generator compiled with weight freezing gives eager's
    outputs, and ``ganc profile`` times it (the very compiled function compared). In a
    child process: torch.compile changes process-wide state (dynamo caches, inductor
    settings) the rest of the suite must not inherit."""
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    config = "8_4_8_4_8_4_8_4"
    out = subprocess.run([sys.executable, "-c", INDUCTOR_CHECK, "profile", "--netG",
                          "sub_mobile_resnet_9blocks", "--config", config,
                          "--size", "32x40", "--runtime", "inductor", "--threads", "1",
                          "--repeats", "2", "--json"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res, after, check = [json.loads(ln) for ln in out.stdout.splitlines()
                         if ln.startswith("{")][-3:]
    assert after["rc"] == 0
    _check_compiled(after)                           # what was timed was compiled
    assert check["shape"] == [1, 3, 32, 40]
    assert check["eager_std"] > 0.1                  # outputs that can differ
    assert check["max_abs_diff"] <= 1e-4
    # ...and the comparison ran that compiled function (no second compile)
    assert {k: check[k] for k in after if k != "rc"} == {k: after[k] for k in after
                                                         if k != "rc"}
    net = gnn.build("sub_mobile_resnet_9blocks", config=config)
    assert (res["netG"], res["config"], res["input_size"]) == (
        "sub_mobile_resnet_9blocks", config, [1, 3, 32, 40])
    # every feature map is 40/32 as wide as at 32x32, and so are the MACs
    assert 32 * res["macs"] == 40 * CostModel(32).macs(config)
    assert res["params"] == sum(p.numel() for p in net.parameters())
    lat = res["latency"]
    assert set(lat) == {"median_ms", "min_ms", "repeats", "device", "runtime", "threads"}
    assert (lat["runtime"], lat["device"], lat["threads"], lat["repeats"]) == (
        "inductor", "cpu", 1, 2)
    assert 0 < lat["min_ms"] <= lat["median_ms"]


# ---------------------------------------------------------------- latency table
def test_segments_cover_the_network_once_and_depend_on_their_positions():
    net = gnn.build("sub_mobile_resnet_9blocks", config="16_8_12_4_16_8_4_12")
    segs = segments(9)
    covered = [i for s in segs for i in range(s.start, s.stop)]
    assert covered == list(range(len(net.model)))
    # changing a position outside a segment's positions leaves its layers' shapes alone
    base = ChannelConfig.parse("16_8_12_4_16_8_4_12")
    for s in segs:
        for p in range(8):
            if p in s.positions:
                continue
            other = list(base)
            other[p] = 4 if base[p] != 4 else 8
            a = gnn.build("sub_mobile_resnet_9blocks", config=str(base))
            b = gnn.build("sub_mobile_resnet_9blocks", config=str(ChannelConfig(tuple(other))))
            sa = [tuple(t.shape) for t in torch.nn.Sequential(*a.model[s.start:s.stop])
                  .state_dict().values()]
            sb = [tuple(t.shape) for t in torch.nn.Sequential(*b.model[s.start:s.stop])
                  .state_dict().values()]
            assert sa == sb, (s.name, p)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_latency_table_ranks_20_random_subnetworks_like_measurements(runtime):
    """Entries and the 20 whole networks are timed side by side (medians of rounds), so
    a loaded machine shifts both alike; the rank correlation is what is asserted."""
    space = SearchSpace.uniform("wide", [64, 8])
    rng = random.Random(0)
    configs = []
    while len(configs) < 20:
        c = str(space.sample(rng))
        if c not in configs:
            configs.append(c)
    table, v = build_and_validate(space, 64, configs, runtime=runtime, threads=1, rounds=5)
    print(f"{runtime}: Spearman {v['spearman']:.3f}, median error "
          f"{100 * v['median_rel_error']:.1f}%, {len(table.entries)} entries, "
          f"{table.build_s:.0f} s")
    assert len(table.entries) == 2 + 4 * 5 + 2
    assert v["n"] == 20 and v["spearman"] >= 0.9, v
    # the table round-trips through JSON and predicts the same
    again = LatencyTable.from_dict(table.to_dict())
    assert [again.predict(c) for c in configs] == v["predicted_ms"]


def _toy_table(space: SearchSpace) -> LatencyTable:
    """A table with made-up entries: wider is slower (for the budget logic, no timing)."""
    import itertools
    entries = {}
    for s in segments(9):
        for ws in itertools.product(*(space.choices[p] for p in s.positions)):
            entries[f"{s.kind}:" + "_".join(map(str, ws))] = 0.1 * sum(ws) + 0.01 * len(s.name)
    return LatencyTable(runtime="eager", threads=1, size=32, choices=space.choices,
                        entries=entries, overhead_ms=0.05)


SPACE = SearchSpace.uniform("tiny", [16, 8, 4])


def _wide_score(cfg) -> float:
    """Synthetic FID: wider is better, so every search presses against its budget."""
    return -float(sum(ChannelConfig.parse(cfg)))


def test_evolution_under_budget_ms_never_hands_out_a_config_over_it():
    from ganc.search.evolution import DONE, Evolution
    table = _toy_table(SPACE)
    budget_ms = table.predict("8_8_8_8_8_8_8_8")
    evo = Evolution(SPACE, math.inf, CostModel(32).macs, population=8, generations=4,
                    seed=3, constraint=LatencyBudget(table, budget_ms))
    seen = []
    while True:
        cfg = evo.ask()
        if cfg == DONE:
            break
        assert cfg is not None
        seen.append(cfg)
        assert table.predict(cfg) <= budget_ms, cfg
        evo.tell(cfg, _wide_score(cfg))
    best = evo.best()[0][0]
    assert table.predict(best) <= budget_ms
    assert len(set(seen)) > 8 and any(table.predict(c) > budget_ms
                                      for c in ("16_16_16_16_16_16_16_16",))
    # without the constraint the same search goes over the latency budget
    free = Evolution(SPACE, math.inf, CostModel(32).macs, population=8, generations=2, seed=3)
    over = []
    while (cfg := free.ask()) not in (DONE, None):
        over.append(table.predict(cfg) > budget_ms)
        free.tell(cfg, _wide_score(cfg))
    assert any(over)


def test_tune_searchers_under_budget_ms_and_the_latency_objective():
    """Both Tune searchers take the constraint; NSGA-II takes latency_ms as an objective
    (driven here without a Tune loop: suggest / on_trial_complete)."""
    from ray.tune.search import Searcher
    from ganc.search.nsga2 import NSGA2Searcher
    from ganc.search.searcher import EvolutionSearcher
    table = _toy_table(SPACE)
    budget_ms = table.predict("8_8_8_8_8_8_8_8")
    cost = CostModel(32)
    for make in (
            lambda c: EvolutionSearcher(SPACE, math.inf, cost, population=6, generations=3,
                                        seed=1, constraint=c),
            lambda c: NSGA2Searcher(SPACE, math.inf, cost, population=6, generations=3,
                                    seed=1, objectives=["fid", "macs", "latency_ms"],
                                    constraint=c)):
        s = make(LatencyBudget(table, budget_ms))
        n = 0
        for i in range(40):
            sug = s.suggest(f"t{i}")
            if sug is None or sug == Searcher.FINISHED:
                break
            cfg = sug["config"]
            assert table.predict(cfg) <= budget_ms, cfg
            s.on_trial_complete(f"t{i}", {"fid": _wide_score(cfg), "macs": cost.macs(cfg),
                                          "latency_ms": table.predict(cfg)})
            n += 1
        assert n >= 6


def test_latency_budget_below_the_smallest_subnetwork_fails_in_one_line():
    table = _toy_table(SPACE)
    smallest = table.predict(SPACE.smallest())
    with pytest.raises(BudgetError) as e:
        check_latency_budget(SPACE, smallest * 0.9, table)
    assert "4_4_4_4_4_4_4_4" in str(e.value) and "\n" not in str(e.value)
    check_latency_budget(SPACE, smallest, table)
    with pytest.raises(ConfigError, match="no entry"):
        table.predict("32_8_8_8_8_8_8_8")


@pytest.mark.slow
def test_search_with_budget_ms_through_tune_and_the_pool(ray_local, tmp_path):
    """The real stage: the table comes from the store's latency cache, every scored
    config is within budget_ms by the table, and best.json records both."""
    from ganc.search.driver import run_search
    from ganc.store import open_store
    from tests.test_search import make_supernet_run, tiny_config
    url = str(tmp_path / "store")
    store = make_supernet_run(url)
    cfg = tiny_config(url)
    cfg.search.latency_runtime = "eager"
    cfg.fid.num_actors = 1          # one budget, one trial: a second FID actor only idles
    space = SearchSpace.from_dict(store.run("tiny").get_torch("supernet/final.pt")
                                  ["search_space"])
    table = build_table(space, 32, runtime="eager", threads=1, rounds=3)
    store.put_json(table_key(space, 32, "eager", 1), table.to_dict())
    preds = sorted(table.predict(str(c)) for c in _all(space))
    # a third of the space fits (at least the smallest: a noisy table need not rank it first)
    budget_ms = max(preds[len(preds) // 3], table.predict(space.smallest()))
    summary = run_search(cfg, url, budget_ms=budget_ms)
    run = open_store(url).run("tiny")
    rows = run.get_parquet("search/results.parquet").to_pylist()
    assert rows and all(r["latency_ms"] <= budget_ms for r in rows)
    assert all(r["latency_ms"] == pytest.approx(table.predict(r["config"])) for r in rows)
    best = run.get_json("best.json")
    assert best["search"]["budget_ms"] == budget_ms and best["search"]["budget_macs"] is None
    assert best["latency_ms"] <= budget_ms
    assert best["search"]["latency_table"]["key"] == table_key(space, 32, "eager", 1)
    assert summary["config"] == best["config"]


def _all(space):
    import itertools
    return [ChannelConfig(t) for t in itertools.product(*space.choices)]
