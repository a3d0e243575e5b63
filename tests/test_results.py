"""search/results.parquet: rows merged by (method, budget or target, config), each method
keeping its label; re-runs and retries add no duplicate and drop no other method's rows."""
import pyarrow as pa

from ganc.results import RESULTS, append_results, result_key
from ganc.store import open_store


def search_row(config, fid, method="evolution", budget=1e6):
    return {"config": config, "macs": 100, "params": 10, "fid": fid, "kid": None,
            "generation": 0, "trial_id": "t", "wall_s": 1.0, "method": method,
            "budget": budget}


def prune_row(target, fid):
    return {"method": "prune-lds", "config": "[4, 8]", "macs": 50, "params": 5, "fid": fid,
            "target": target, "ratio_G": target, "export": f"prune/p{target:g}"}


def table(run):
    return run.get_parquet(RESULTS).to_pylist()


def test_results_merge_idempotently_and_keep_every_method(tmp_path):
    run = open_store(tmp_path / "store").run("r")
    append_results(run, [search_row("8_8", 30.0), search_row("4_4", 40.0)])
    append_results(run, [prune_row(0.1, 50.0), prune_row(0.2, 45.0)])
    append_results(run, [prune_row(0.1, 50.0), prune_row(0.2, 45.0)])     # run twice
    assert len(table(run)) == 4
    # the search again (same budget): rescored rows replace theirs, new ones are added,
    # the pruning rows stay
    append_results(run, [search_row("8_8", 29.0), search_row("2_2", 60.0)])
    rows = table(run)
    assert [(r["method"], r["config"], r["fid"]) for r in rows] == [
        ("evolution", "8_8", 29.0), ("evolution", "4_4", 40.0), ("prune-lds", "[4, 8]", 50.0),
        ("prune-lds", "[4, 8]", 45.0), ("evolution", "2_2", 60.0)]
    # NSGA-II rows keep their label; another budget is another row
    append_results(run, [search_row("8_8", 31.0, method="nsga2"),
                         search_row("8_8", 28.0, budget=2e6)])
    rows = table(run)
    assert len(rows) == 7 and len({result_key(r) for r in rows}) == 7
    assert [r["method"] for r in rows].count("nsga2") == 1
    assert rows[2]["target"] == 0.1 and rows[0]["target"] is None      # columns: the union
    assert run.temp_keys() == []


def test_legacy_table_without_method_reads_as_evolution(tmp_path):
    run = open_store(tmp_path / "store").run("r")
    run.put_parquet(RESULTS, pa.Table.from_pylist([{"config": "8_8", "macs": 1, "fid": 3.0}]))
    append_results(run, [prune_row(0.3, 9.0)])
    append_results(run, [prune_row(0.3, 9.0)])
    assert [r["method"] for r in table(run)] == ["evolution", "prune-lds"]


def test_a_stage_marker_without_its_artifacts_is_not_finished(tmp_path):
    """A run holding only pipeline/<stage>.json markers finishes nothing: every stage
    names what it lacks; export counts by its manifest only."""
    from ganc.config import PIPELINE_STAGES, RunConfig
    from ganc.resume import MARKER, missing_artifacts
    run = open_store(tmp_path / "store").run("markers")
    cfg = RunConfig()
    for stage in PIPELINE_STAGES:
        run.put_json(MARKER.format(stage), {"stage": stage})
    assert all(missing_artifacts(cfg, run, s) for s in PIPELINE_STAGES)
    assert missing_artifacts(cfg, run, "export") == ["export/MANIFEST.json"]
    run.write_bytes("export/model.pt", b"w")
    run.put_json("export/model.json", {})
    assert missing_artifacts(cfg, run, "export") == ["export/MANIFEST.json"]
    run.commit_unit("export", {"model.pt": b"w", "model.json": {}})
    assert missing_artifacts(cfg, run, "export") == []
    cfg.model.teacher_weights = "released.pth"      # a given teacher: nothing to train
    assert missing_artifacts(cfg, run, "teacher") == []


def test_stage_inputs_refuse_a_changed_config_and_restart_resets(tmp_path):
    """A stage that ran with other config fields stops the job in one line naming the stage
    and the fields; --restart-from forgets that stage and the later ones."""
    import pytest

    from ganc.config import PIPELINE_STAGES, load_config
    from ganc.errors import ConfigError
    from ganc.resume import INPUTS, MARKER, check_inputs, restart_from, stage_inputs
    run = open_store(tmp_path / "store").run("fp")
    stages = list(PIPELINE_STAGES)
    cfg = load_config(None, ["search.population=8"])
    for stage in stages:
        run.put_json(INPUTS.format(stage), {"fields": stage_inputs(cfg, stage)})
        run.put_json(MARKER.format(stage), {"stage": stage})
    run.put_json("search/x.json", {})
    run.put_json("best.json", {})
    run.put_json("supernet/final.json", {})
    check_inputs(cfg, run, stages)                                 # same config: fine
    check_inputs(load_config(None, ["search.population=8", "scale.workers=3",
                                    "fid.num_actors=2"]), run, stages)   # how, not what
    changed = load_config(None, ["search.population=9", "search.budget_macs=1e9"])
    with pytest.raises(ConfigError) as e:
        check_inputs(changed, run, stages)
    assert str(e.value) == (f"run {run.url()}: stage search ran with another config "
                            "(search.budget_macs: recorded 0.0, now 1000000000.0; "
                            "search.population: recorded 8, now 9); rerun it with "
                            "--restart-from search or use a new --run-id")
    # a teacher field reaches every stage downstream of the teacher; the first is named
    with pytest.raises(ConfigError,
                       match=r"stage teacher .*\(teacher\.lr: recorded 0\.0002, now 0\.001\)"):
        check_inputs(load_config(None, ["search.population=8", "teacher.lr=1e-3"]), run,
                     stages)
    assert restart_from(run, stages, "search") == stages[stages.index("search"):]
    check_inputs(changed, run, stages)                             # search onwards: reset
    assert not run.exists("search/x.json") and not run.exists("best.json")
    assert not run.exists(MARKER.format("export")) and run.exists(MARKER.format("supernet"))
    assert run.exists("supernet/final.json")
    with pytest.raises(ConfigError, match="--restart-from 'nope'"):
        restart_from(run, stages, "nope")


def _without(d: dict, dotted) -> dict:
    """``d`` (a nested config dict) less the dotted fields: a config from before they existed."""
    import copy
    out = copy.deepcopy(d)
    for name in dotted:
        *path, last = name.split(".")
        sub = out
        for p in path:
            sub = sub[p]
        del sub[last]
    return out


def test_fields_added_later_leave_old_fingerprints_unchanged_at_their_defaults(tmp_path):
    """A config field added after a run recorded its fingerprints (data.val_split,
    data.split_targets, model.teacher_config) is left out of the fingerprint while it has
    its default, so the run resumes; set to anything else it is a change, named in one line."""
    import pytest

    from ganc.config import PIPELINE_STAGES, RunConfig, load_config
    from ganc.errors import ConfigError
    from ganc.resume import (INPUTS, _flat, check_inputs, check_resume, resume_inputs,
                             stage_inputs)
    from ganc.stages import STAGES
    from ganc.resume import ADDED_FIELDS as added
    assert set(added) <= set(_flat(RunConfig().to_dict(), ""))          # real fields
    cfg = load_config(None, ["search.population=8"])
    old = load_config(None, ["search.population=8"])
    stripped = _without(old.to_dict(), added)
    old.to_dict = lambda: stripped                   # the config as it was before them
    for stage in PIPELINE_STAGES:
        assert stage_inputs(cfg, stage) == stage_inputs(old, stage), stage
    for stage in [s.name for s in STAGES if s.resume_sections]:
        assert resume_inputs(cfg, stage, x=1) == resume_inputs(old, stage, x=1), stage

    # an old run's records: resumed under the defaults, refused once a new field is set
    run = open_store(tmp_path / "store").run("old")
    stages = list(PIPELINE_STAGES)
    for stage in stages:
        run.put_json(INPUTS.format(stage), {"fields": stage_inputs(old, stage)})
    check_inputs(cfg, run, stages)
    check_inputs(load_config(None, ["search.population=8", "data.val_split=0",
                                    "data.split_targets=true"]), run, stages)
    with pytest.raises(ConfigError,
                       match=r"stage teacher .*\(data\.val_split: recorded .*, now 0\.1\)"):
        check_inputs(load_config(None, ["search.population=8", "data.val_split=0.1"]), run,
                     stages)
    with pytest.raises(ConfigError, match=r"\(model\.teacher_config: recorded .*, "
                                          r"now '16_16_32_16_32_32_16_16'\)"):
        check_inputs(load_config(None, ["search.population=8",
                                        "model.teacher_config=16_16_32_16_32_32_16_16"]),
                     run, stages)
    run.put_json("finetune/inputs.json",
                 {"stage": "finetune", "fields": resume_inputs(old, "finetune")})
    check_resume(run, "finetune", resume_inputs(cfg, "finetune"), True, "fix it")
    with pytest.raises(ConfigError, match=r"data\.split_targets: recorded .*, now False"):
        check_resume(run, "finetune",
                     resume_inputs(load_config(None, ["data.split_targets=false"]), "finetune"),
                     True, "fix it")


def test_every_field_added_since_the_snapshot_is_listed_as_added_or_ignored():
    """A config field added to ganc must be in ganc.resume.ADDED_FIELDS (left out of
    fingerprints at its default, so runs recorded before it resume) or IGNORED: otherwise
    every run made before it stops with "stage ... ran with another config" after the
    upgrade (as the horse2zebra long run did when data.unpaired and teacher.lambda_rec_*
    came). The snapshot is the field set of 2026-12-07 and is not to be edited."""
    from pathlib import Path

    from ganc.config import RunConfig
    from ganc.resume import ADDED_FIELDS, IGNORED, _flat
    snapshot = Path(__file__).parent / "data" / "config_fields.txt"
    known = {line.strip() for line in snapshot.read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert len(known) > 100
    new = sorted(set(_flat(RunConfig().to_dict(), "")) - known - set(ADDED_FIELDS)
                 - set(IGNORED))
    assert not new, (f"config fields added since {snapshot.name}: {new}; list each in "
                     "ganc.resume.ADDED_FIELDS (its default must reproduce what runs did "
                     "before it) or IGNORED (it changes how, not what, a stage computes)")
