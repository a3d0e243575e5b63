"""One batch semantics: a real TorchTrainer with 1 and with 2 workers on the loopback Ray,
the same global batch and length in epochs, sees the same images per step and per epoch
and stops at the same epoch count."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from ganc.config import from_dict
from ganc.store import open_store
from ganc.train import launch
from ganc.train.teacher import train_teacher


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path_factory.getbasetemp() / "ganc-cache"))


def _batches(hooks) -> dict:
    """step -> sorted image names of the global batch (every rank's part together)."""
    seen = defaultdict(list)
    for f in hooks.glob("rank*-batches.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            seen[rec["step"]] += rec["paths"]
    return {s: sorted(p) for s, p in sorted(seen.items())}


@pytest.mark.slow
def test_one_and_two_workers_see_the_same_images_and_stop_at_the_same_epoch(
        ray_local, tmp_path, monkeypatch):
    store = tmp_path / "store"
    runs = {}
    for workers in (1, 2):
        hooks = tmp_path / f"hooks-{workers}"
        hooks.mkdir()
        monkeypatch.setenv(launch.HOOK_ENV, str(hooks))
        cfg = from_dict({
            "name": f"w{workers}", "seed": 3,
            "data": {"demo_n": 10, "demo_size": 32, "load_size": 32, "crop_size": 32,
                     "batch_size": 4},
            "model": {"teacher_ngf": 4, "ndf": 4},
            "teacher": {"epochs": 2, "epochs_decay": 1, "checkpoint_every": 100,
                        "log_every": 2, "eval_every": -1},
            "scale": {"workers": workers, "max_failures": 0}})
        result = train_teacher(cfg, str(store))
        run = open_store(store).run(f"w{workers}")
        runs[workers] = {"result": result, "schedule": run.get_json("teacher/schedule.json"),
                         "batches": _batches(hooks),
                         "final": run.get_torch("teacher/final.pt")}

    one, two = runs[1], runs[2]
    # 10 images, global batch 4: an epoch is 2 steps of 4 images (2 left out), 3 epochs
    for r, w in ((one, 1), (two, 2)):
        s = r["schedule"]
        assert (s["steps_per_epoch"], s["images_per_epoch"], s["total_steps"]) == (2, 8, 6)
        assert (s["workers"], s["worker_batch"]) == (w, 4 // w)
        assert r["result"]["step"] == r["final"]["step"] == 6
        assert r["result"]["metrics"]["epoch"] == 3.0
        assert r["final"]["schedule"]["total_steps"] == 6
        assert sorted(r["batches"]) == list(range(1, 7))
        assert all(len(b) == 4 for b in r["batches"].values())
        for epoch in range(3):   # an epoch: 8 distinct images
            names = r["batches"][2 * epoch + 1] + r["batches"][2 * epoch + 2]
            assert len(set(names)) == 8
    assert one["batches"] == two["batches"]      # the same images at every step
    assert [s["world"] for s in two["result"]["starts"]] == [2]
