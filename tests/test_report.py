"""The report says what it shows: every method's models on its plot (each search's
candidates and front per budget, the prune stage's models, the exported model, the
teacher), each method with its own marker and a legend entry; a MACs axis whose tick
labels are plain numbers that never overlap; and the split (and image count) of every
FID in the plot, the table and summary.json. Built from a small synthetic store with the
real functions (no Ray, no scoring)."""
import json

import numpy as np
import pyarrow as pa
import pytest
from matplotlib.markers import MarkerStyle

from ganc.paretoplot import MACS_LABEL, Panel, Series, figure
from ganc.report import PLOT, format_table, pareto_figure, publish
from ganc.results import PARETO, append_results
from ganc.search.report import search_figure
from ganc.store import open_store

G = 1e9
# the demo run's sizes: sub-networks at 0.015-0.03 GMACs, the teacher at 0.237 (the
# range whose log ticks were labelled 2x10^-2, 3x10^-2 and 4x10^-2 over one another)
TEACHER = {"macs": int(0.237 * G), "fid": 246.2}


def search_rows(method, budget, n, start=0.015):
    return [{"method": method, "budget": budget, "config": f"{method}_{budget:g}_{i}",
             "macs": int((start + 0.001 * i) * G), "params": 100, "fid": 300.0 + 3 * i,
             "kid": None, "generation": 0, "trial_id": "t", "status": "ok"}
            for i in range(n)]


def prune_row(target, macs_g, fid):
    return {"method": "prune-lds", "config": "[4, 8]", "macs": int(macs_g * G), "params": 5,
            "fid": fid, "target": target, "prefix": f"prune/p{target:g}"}


def table_rows(split="val", chosen="search"):
    """The report's rows as score_rows leaves them: teacher, exported, best pruned."""
    common = {"fid_split": split, "fid_search_split": chosen, "kid": 0.1, "kid_std": 0.01}
    return [
        {"model": "resnet_9blocks (ngf 16)", "method": "teacher", "macs": TEACHER["macs"],
         "params": 715651, "fid": 246.7, "fid_search": 246.2, **common},
        {"model": "sub 4_8_4_12", "method": "evolution", "macs": int(0.0203 * G),
         "params": 25403, "fid": 308.3, "fid_search": 315.5, "exported": "supernet slice",
         **common},
        {"model": "pruned p=0.1", "method": "prune-lds", "macs": int(0.0236 * G),
         "params": 47269, "fid": 333.5, "fid_search": 343.6, **common}]


@pytest.fixture
def run(tmp_path):
    """A run whose stages left two evolution budgets, an NSGA-II search and two pruned
    models (one only in prune/summary.json, as a prune stage the table lacks a row of)."""
    run = open_store(tmp_path / "store").run("r")
    evo = search_rows("evolution", 0.024 * G, 6) + search_rows("evolution", 0.02 * G, 4)
    nsga = search_rows("nsga2", 0.024 * G, 5, start=0.016)
    append_results(run, evo + nsga + [prune_row(0.1, 0.0236, 343.6)])
    run.put_json("prune/summary.json", {"rows": [prune_row(0.1, 0.0236, 343.6),
                                                 prune_row(0.2, 0.045, 330.0)]})
    fronts = [evo[0], evo[6], nsga[0]]
    run.put_parquet(PARETO, pa.table({c: [r[c] for r in fronts] for c in fronts[0]}))
    return run


def drawn(ax) -> dict:
    """{legend label: (x values, marker path vertices)} of the points of an axes."""
    out = {}
    for c in ax.collections:
        if not c.get_label().startswith("_"):
            out[c.get_label()] = ([x for x, _ in c.get_offsets()], c.get_paths()[0].vertices)
    for line in ax.lines:
        if not line.get_label().startswith("_") and line.get_marker() not in ("None", None):
            path = MarkerStyle(line.get_marker()).get_path()
            out[line.get_label()] = (list(line.get_xdata()), path.vertices)
    return out


def test_the_plot_shows_every_methods_models_each_with_its_marker(run):
    fig = pareto_figure(run, table_rows(), "fid", {"search": 8, "val": 4})
    search, evals = fig.axes[:2]
    pts = drawn(search)
    legend = [t.get_text() for t in search.get_legend().get_texts()]
    assert set(pts) <= set(legend)
    counts = {label: len(xs) for label, (xs, _) in pts.items()}
    assert counts["evolution, budget 0.024G: scored (6)"] == 6
    assert counts["evolution, budget 0.02G: scored (4)"] == 4
    assert counts["nsga2, budget 0.024G: scored (5)"] == 5
    assert counts["evolution, budget 0.024G: Pareto front"] == 1
    assert counts["prune-lds: pruned models (p=0.1, 0.2)"] == 2    # the prune stage's
    assert counts["teacher"] == 1 and sum("exported: evolution" in k for k in pts) == 1
    assert pts["teacher"][0] == [pytest.approx(0.237)]
    marker = {m: next(v for k, (_, v) in pts.items() if k.startswith(m))
              for m in ("evolution", "nsga2", "prune-lds", "teacher", "exported")}
    for a in marker:
        for b in marker:
            if a < b:
                assert not (marker[a].shape == marker[b].shape
                            and np.allclose(marker[a], marker[b])), f"{a} and {b}: one marker"
    # the eval split: the table's three models as the report scored them
    on_val = drawn(evals)
    assert len(on_val) == 3 and {len(xs) for xs, _ in on_val.values()} == {1}
    assert "MACs budget" in legend


def tick_boxes(fig, ax):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return sorted(((t.get_window_extent(r), t.get_text()) for t in ax.get_xticklabels()
                   if t.get_visible() and t.get_text()), key=lambda b: b[0].x0)


@pytest.mark.parametrize("lo,hi", [(0.015, 0.237), (0.021, 0.045), (0.02, 0.021),
                                   (0.0004, 900.0), (3.0, 70.0), (0.08, 0.4)])
def test_macs_tick_labels_are_plain_numbers_that_do_not_overlap(lo, hi):
    panel = Panel("FID (search split, n=8)\nlower is better",
                  [Series("evolution", [lo * G, hi * G], [300.0, 250.0], "evolution")])
    for fig in (figure([panel]), figure([panel, panel])):
        for ax in fig.axes:
            boxes = tick_boxes(fig, ax)
            assert boxes, (lo, hi)
            for (a, ta), (b, tb) in zip(boxes, boxes[1:]):
                assert a.x1 < b.x0, f"tick labels {ta!r} and {tb!r} overlap"
            for _, text in boxes:
                assert text.endswith("G") and "^" not in text and "$" not in text, text
                float(text[:-1])
            assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
            assert ax.get_xlabel() == MACS_LABEL


def test_axes_table_and_summary_name_the_split_of_every_fid(run):
    rows = table_rows()
    summary = publish(run, rows, images={"search": 8, "val": 4}, size=32,
                      files={"grid": "g"})
    assert run.read_bytes(PLOT)[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["files"]["pareto"] == run.url(PLOT)
    stored = run.get_json("report/summary.json")
    assert stored["fid_split"] == "val" and stored["fid_search_split"] == "search"
    assert stored["fid_images"] == {"search": 8, "val": 4}
    for r in stored["rows"]:
        assert (r["fid_split"], r["fid_search_split"]) == ("val", "search")
    head = summary["table"].splitlines()[0].split()
    assert ["FID", "val", "FID", "search"] == head[head.index("M") + 1:][:4]
    assert "KID val" in summary["table"].splitlines()[0]
    assert run.read_bytes("report/summary.txt").decode().strip() == summary["table"]
    fig = pareto_figure(run, rows, "fid", {"search": 8, "val": 4})
    labels = [ax.get_ylabel() for ax in fig.axes[:2]]
    assert labels[0].startswith("FID (search split, n=8)")
    assert labels[1].startswith("FID (val split, n=4)")
    # a split whose name is long is not cut short in the header
    wide = format_table(table_rows(split="validation"))
    assert "FID validation" in wide and "KID validation" in wide
    json.dumps(summary)


def test_without_a_search_split_one_panel_on_the_eval_split(run):
    fig = pareto_figure(run, table_rows(chosen="val"), "fid", {"val": 4})
    axes = [ax for ax in fig.axes if ax.get_ylabel()]
    assert len(axes) == 1 and axes[0].get_ylabel().startswith("FID (val split, n=4)")
    assert any("prune-lds" in k for k in drawn(axes[0]))


def test_prune_stage_scored_on_fewer_inputs_says_so(run):
    fig = pareto_figure(run, table_rows(), "fid", {"search": 8, "val": 4}, prune_n=3)
    assert "prune-lds: pruned models (p=0.1, 0.2, first 3 inputs)" in drawn(fig.axes[0])
    fig = pareto_figure(run, table_rows(), "fid", {"search": 8, "val": 4}, prune_n=8)
    assert "prune-lds: pruned models (p=0.1, 0.2)" in drawn(fig.axes[0])


def test_the_search_plot_names_its_split_and_keeps_its_ticks_apart():
    rows = search_rows("evolution", 0.024 * G, 6)
    fig = search_figure(rows, rows[:2], TEACHER, 0.024 * G, rows[0], "fid", "search")
    ax = fig.axes[0]
    assert ax.get_ylabel().startswith("FID (search split)")
    assert {"evolution: scored sub-networks (6)", "evolution: Pareto front", "teacher",
            f"best {rows[0]['config']}"} <= set(drawn(ax))
    boxes = tick_boxes(fig, ax)
    assert all(a.x1 < b.x0 for (a, _), (b, _) in zip(boxes, boxes[1:]))


def test_the_search_writes_a_plot_per_budget_with_its_split(tmp_path):
    from ganc.search.report import plot_key, write_results

    class Cost:
        def to_dict(self):
            return {}
    run = open_store(tmp_path / "store").run("s")
    searches = [{"method": "evolution", "budget_macs": 0.024 * G,
                 "rows": search_rows("evolution", 0.024 * G, 6)},
                {"method": "nsga2", "budget_macs": 0.02 * G,
                 "rows": search_rows("nsga2", 0.02 * G, 4)}]
    best = write_results(run, searches, TEACHER, {"fid_split": "search", "criterion": "fid"},
                         Cost())
    assert best["fid_split"] == "search" and len(best["budgets"]) == 2
    for i in range(2):
        assert run.read_bytes(plot_key(i))[:8] == b"\x89PNG\r\n\x1a\n"
