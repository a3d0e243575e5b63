"""Pruning variants of one run side by side: each setting off the default tags the
target's folder (export_prefix), prune.tag is checked in one line, publish's ``prune:``
selector finds a tagged folder and the results table keeps one row per variant."""
from __future__ import annotations

import pytest

import ganc.publish as pub
from ganc.config import PruneConfig
from ganc.errors import ConfigError
from ganc.prune import check_prune_config
from ganc.prune.artifacts import export_prefix
from ganc.results import result_key


@pytest.mark.parametrize("settings, want", [
    ({}, "prune/p0.5"),
    ({"lr": 2e-4}, "prune/p0.5-adaptG"),
    ({"crop_size": 128}, "prune/p0.5-crop128"),
    ({"tag": "mytag"}, "prune/p0.5-mytag"),
    ({"use_lds": False, "lr": 2e-4, "crop_size": 128, "tag": "s5500"},
     "prune/p0.5-nolds-adaptG-crop128-s5500"),
    ({"base_model": "mobile", "use_lds": False, "peer_feedback": False, "prune_d": False,
      "lr": 1e-4, "crop_size": 64, "tag": "a.b_1"},
     "prune/p0.5-mobile-nolds-nopeer-nod-adaptG-crop64-a.b_1"),
])
def test_prefix_per_setting(settings, want):
    assert export_prefix(PruneConfig(**settings), 0.5) == want


def test_prefixes_of_variants_differ():
    variants = [{}, {"lr": 2e-4}, {"crop_size": 128}, {"tag": "x"}, {"lr": 2e-4, "tag": "x"},
                {"crop_size": 128, "tag": "x"}, {"lr": 2e-4, "crop_size": 128}]
    assert len({export_prefix(PruneConfig(**v), 0.1) for v in variants}) == len(variants)


@pytest.mark.parametrize("tag", ["a-b", "a/b", "../x", "sp ace", "x" * 33, "é"])
def test_bad_tag_is_one_line(tag):
    with pytest.raises(ConfigError) as e:
        check_prune_config(PruneConfig(tag=tag))
    msg = str(e.value)
    assert "prune.tag" in msg and repr(tag) in msg and "\n" not in msg


@pytest.mark.parametrize("tag", ["", "s5500", "a.b_C9", "x" * 32])
def test_good_tag(tag):
    check_prune_config(PruneConfig(tag=tag))


def test_publish_selector_finds_tagged_folder(monkeypatch):
    names = ["best", "p0.5", "p0.5-nolds-adaptG-crop128-s5500", "p0.25-mytag"]
    monkeypatch.setattr(pub, "published", lambda run: [{"name": n} for n in names])
    for which, name in [("prune:0.5", "p0.5"),
                        ("prune:p0.5-nolds-adaptG-crop128-s5500", names[2]),
                        ("prune:0.5-nolds-adaptG-crop128-s5500", names[2]),
                        ("prune:0.25-mytag", "p0.25-mytag"),
                        ("prune/p0.25-mytag", "p0.25-mytag"), ("p0.25-mytag", "p0.25-mytag")]:
        assert pub.select(None, which)["name"] == name, which


def test_result_rows_of_variants_are_kept_apart():
    row = {"method": "prune-lds", "target": 0.5, "config": "[4, 8]"}
    a = result_key({**row, "prefix": "prune/p0.5"})
    b = result_key({**row, "prefix": "prune/p0.5-adaptG"})
    assert a != b and a == result_key({**row, "prefix": "prune/p0.5"})
    # a search row (no prefix, or a null one read back from parquet) keeps its key
    search = {"method": "evolution", "budget": 1e9, "config": "8_8"}
    assert result_key(search) == result_key({**search, "prefix": None}) == (
        "evolution", 1e9, "8_8")


def test_summary_keeps_earlier_variants_and_each_keeps_its_config(tmp_path):
    """A second prune of the same run (another variant folder) adds its row to
    prune/summary.json beside the first's instead of replacing it, and each variant keeps
    the config it ran with (prune/configs/<folder>.yaml): publish reads that one, not
    prune/config.yaml (the latest prune's)."""
    from ganc.config import from_dict
    from ganc.prune import driver
    from ganc.prune.artifacts import variant_config_key
    from ganc.publish import run_config
    from ganc.report import prune_rows
    from ganc.store import open_store
    run = open_store(str(tmp_path / "store")).run("r")
    rows = {}
    for lr in (0.0, 2e-4):                          # frozen G, then G adapting
        cfg = from_dict({"name": "r", "prune": {"targets": [0.5], "lr": lr}})
        prefix = export_prefix(cfg.prune, 0.5)
        rows[prefix] = {"method": "prune-lds", "target": 0.5, "config": "[4, 8]",
                        "macs": 10, "fid": 300.0 + lr * 1e5, "prefix": prefix}
        run.commit_unit(prefix, {"row.json": rows[prefix]})
        run.write_bytes("prune/config.yaml", cfg.to_yaml().encode())
        run.write_bytes(variant_config_key(prefix), cfg.to_yaml().encode())
        driver._summarise(cfg, run, 0.0)
    summary = run.get_json("prune/summary.json")["rows"]
    assert sorted(r["prefix"] for r in summary) == ["prune/p0.5", "prune/p0.5-adaptG"]
    assert {p: r["fid"] for p, r in prune_rows(run).items()} == {
        p: r["fid"] for p, r in rows.items()}
    assert run_config(run, "prune/p0.5")["prune"]["lr"] == 0.0
    assert run_config(run, "prune/p0.5-adaptG")["prune"]["lr"] == 2e-4
    # pruning a variant again replaces its own row only
    driver._summarise(cfg, run, 0.0)
    assert len(run.get_json("prune/summary.json")["rows"]) == 2
