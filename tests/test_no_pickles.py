"""The store is not trusted (issue 28): nothing ganc reads back from a run's storage is
unpickled. The search resumes from its own JSON (never ``Tuner.restore``, which unpickles
``tuner.pkl`` and the experiment state); the NSGA-II searcher's state is JSON and
continues exactly where it stopped; an older ganc's pickled searcher state is never
loaded (the search is rebuilt from its rows); Tune's pickled trial errors are not read.
The killed-driver resume with a planted tuner.pkl is in tests/test_search.py."""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest

from ganc.search.cost import CostModel
from ganc.space import ChannelConfig, SearchSpace

GANC = Path(__file__).resolve().parent.parent / "ganc"
SPACE = SearchSpace.uniform("tiny", [16, 8])
COST = CostModel(size=32)


class _Planted:
    """Unpickling it creates ``path`` (what a planted pickle could do, harmlessly)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def planted_pickle(marker) -> bytes:
    return pickle.dumps(_Planted(marker))


def _score(cfg: str) -> float:
    return -float(sum((i + 1) * c for i, c in enumerate(ChannelConfig.parse(cfg))))


def _searcher(seed=3):
    from ganc.search.nsga2 import NSGA2Searcher
    return NSGA2Searcher(SPACE, float("inf"), COST, population=6, generations=8, seed=seed)


def _batches(searcher, n: int, start: int = 0) -> list:
    """Drive ``searcher`` as a search trial does: ask a generation, then tell it."""
    out, serial = [], start
    for _ in range(n):
        batch = []
        for _ in range(6):
            tid = f"b0-{serial}"
            serial += 1
            s = searcher.suggest(tid)
            if not isinstance(s, dict):
                break
            batch.append((tid, s["config"]))
        for tid, c in batch:
            searcher.on_trial_complete(tid, {"fid": _score(c), "macs": COST.macs(c)})
        out += [c for _, c in batch]
    return out


def test_the_nsga2_state_is_json_and_continues_exactly():
    a = _searcher()
    _batches(a, 3)
    state = json.loads(json.dumps(a.get_state()))        # JSON through and through
    b = _searcher()
    b.set_state(state)
    assert _batches(b, 3, 100) == _batches(a, 3, 100)


def test_the_nsga2_searcher_never_unpickles_a_state(tmp_path):
    from ray.tune.search.optuna import OptunaSearch
    marker = tmp_path / "ran"
    path = tmp_path / "searcher.state"
    path.write_bytes(planted_pickle(marker))
    with pytest.raises(ValueError):
        _searcher().restore(str(path))
    OptunaSearch.save(_searcher(), str(path))         # what an older ganc wrote: a pickle
    with pytest.raises(ValueError):
        _searcher().restore(str(path))
    assert not marker.exists()
    _searcher().save(str(path))                       # what ganc writes now: JSON
    assert json.loads(path.read_text())["format"] == "ganc-nsga2/1"


def test_an_older_pickled_state_is_replayed_from_the_rows_never_loaded(tmp_path,
                                                                      monkeypatch, capsys):
    from ganc.search import trial
    marker = tmp_path / "ran"
    a = _searcher()
    scored = _batches(a, 2)
    rows = [{"config": c, "status": "ok", "fid": _score(c), "macs": COST.macs(c),
             "generation": 0, "trial_id": f"b0-{i}", "method": "nsga2", "budget": None}
            for i, c in enumerate(scored)]
    saved = {trial.STATE_FILE: planted_pickle(marker), "rows": rows,
             "progress": {"serial": len(rows), "batches": 2}, "batches": 2,
             "where": "tune/t/checkpoint_000001"}
    monkeypatch.setattr(trial, "_newest_saved_state", lambda spec: saved)
    b = _searcher()
    done = trial._restore(b, {"index": 0, "method": "nsga2", "budget": None}, "b0")
    assert not marker.exists()
    said = capsys.readouterr()
    assert "not JSON" in said.out + said.err
    assert done.batches == 2 and done.rows == rows
    more = _batches(b, 2, len(rows))
    assert more and not set(more) & set(scored)       # nothing recorded is scored again


def test_a_checkpoint_of_an_older_ganc_is_matched_to_its_search_by_its_rows():
    from ganc.search import trial
    rows = [{"trial_id": "b1-0", "method": "evolution", "budget": 2.5e6, "config": "8"}]
    old = trial._saved_state({trial.STATE_FILE: b"{}", trial.ROWS_FILE: json.dumps(rows),
                              trial.PROGRESS_FILE: b'{"serial": 1, "batches": 1}'}.get,
                             "tune/t/checkpoint_000000")
    assert trial._same_search(old, {"index": 1, "method": "evolution", "budget": 2.5e6})
    assert not trial._same_search(old, {"index": 0, "method": "evolution", "budget": 2.5e6})
    assert not trial._same_search(old, {"index": 1, "method": "nsga2", "budget": 2.5e6})
    new = dict(old, progress={"serial": 1, "batches": 1,
                              "search": {"index": 0, "method": "nsga2", "budget": None}})
    assert trial._same_search(new, {"index": 0, "method": "nsga2", "budget": None})


def test_saved_searches_reads_listings_only(tmp_path):
    from ganc.search.experiment import EXPERIMENT, saved_searches
    marker = tmp_path / "ran"
    exp = tmp_path / EXPERIMENT
    exp.mkdir()
    (exp / "tuner.pkl").write_bytes(planted_pickle(marker))
    assert saved_searches(str(tmp_path)) == 0
    for t in ("search_trial_a_00000", "search_trial_b_00001"):
        ck = exp / t / "checkpoint_000001"
        ck.mkdir(parents=True)
        (ck / "searcher.state").write_bytes(planted_pickle(marker))
    assert saved_searches(str(tmp_path)) == 2
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_fresh_search_empties_the_earlier_experiment(kind, tmp_path, request):
    """What the stage passes Tune (``ray_storage``): listed, then removed on ``--fresh``."""
    from ganc.context import ray_storage
    from ganc.search.experiment import _clear, saved_searches
    from ganc.store import open_store
    url = str(tmp_path / "store") if kind == "file" else request.getfixturevalue("s3_url")
    run = open_store(url).run("r")
    run.put_json("search/tune/search_trial_0/checkpoint_000000/progress.json", {})
    run.put_json("search/tune/search_trial_0/checkpoint_000001/progress.json", {})
    path, fs = ray_storage(run, "search")
    assert saved_searches(path, fs) == 2
    _clear(f"{path}/tune", fs)
    assert saved_searches(path, fs) == 0 and not run.ls("search/tune")


def test_tune_results_carry_the_error_text_not_its_pickle():
    from ray.tune.experiment.trial import Trial
    from ganc.context import keep_pickles_out_of_tune
    keep_pickles_out_of_tune()
    assert Trial.get_pickled_error(object()) is None


# Reads that could run code: pickle / cloudpickle loads, torch.load without
# weights_only=True, Ray Tune's Tuner.restore, numpy with allow_pickle=True.
UNSAFE = re.compile(r"(?:cloud)?pickle\.loads?\(|Tuner\.restore\(|allow_pickle\s*=\s*True")


def _unsafe(code: str) -> bool:
    return bool(UNSAFE.search(code)) or (
        "torch.load(" in code and not re.search(r"weights_only\s*=\s*True", code))


def test_no_module_of_ganc_reads_anything_through_a_pickle():
    offenders = []
    for p in sorted(GANC.rglob("*.py")):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if _unsafe(code) and "``" not in code:
                offenders.append(f"{p.relative_to(GANC.parent)}:{n}: {line.strip()}")
    assert offenders == []
