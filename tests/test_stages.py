"""The stage declarations (ganc.stages) are consistent, the pipeline, resume and CLI read
them, the pipeline opens the run context once, and no stage imports the pipeline."""
from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

from ganc.config import PIPELINE_STAGES, RunConfig
from ganc.stages import STAGE_NAMES, STAGES, Stage, stage

GANC = Path(__file__).resolve().parent.parent / "ganc"
SECTIONS = {f.name for f in dataclasses.fields(RunConfig)}


def test_each_stage_reads_earlier_stages_and_real_config_sections():
    assert len(set(STAGE_NAMES)) == len(STAGE_NAMES)
    for i, s in enumerate(STAGES):
        for up in s.upstream:
            assert up in STAGE_NAMES[:i], f"{s.name}: upstream {up!r} is not an earlier stage"
        for sec in (*s.sections, *s.resume_sections):
            assert sec in SECTIONS, f"{s.name}: {sec!r} is no section of RunConfig"
        if s.given_by:
            section, field = s.given_by.split(".")
            assert hasattr(getattr(RunConfig(), section), field), s.given_by


def test_what_a_stage_must_leave_is_what_a_restart_removes():
    """Every artifact and unit lies under one of the stage's outputs."""
    for s in STAGES:
        for key in (*s.artifacts, *s.units):
            assert any(key == o or key.startswith(o + "/") for o in s.outputs), (s.name, key)


def test_each_stage_declares_its_runner_and_code():
    for s in STAGES:
        assert s.runner.startswith("ganc.runners:"), s.name
        assert callable(s.load_runner()), s.name
        for m in s.modules:           # found, not imported (they import torch)
            assert (GANC.parent / (m.replace(".", "/") + ".py")).is_file(), (s.name, m)


def test_config_and_cli_take_the_stage_names_from_the_declarations():
    from ganc.cli import build_parser
    assert PIPELINE_STAGES == STAGE_NAMES
    assert RunConfig().pipeline.stages == list(STAGE_NAMES)
    sub = next(a for a in build_parser()._actions if a.dest == "command" or a.choices and
               "compress" in a.choices)
    compress = sub.choices["compress"]
    helps = {a.dest: a.help or "" for a in compress._actions}
    listed = helps["stages"].rsplit(":", 1)[1].strip().split(",")
    assert listed == list(STAGE_NAMES)


IMPORTS_PIPELINE = re.compile(
    r"^\s*(from\s+(\.+|ganc\.)pipeline\s+import|import\s+ganc\.pipeline\b|"
    r"from\s+(\.+|ganc)\s+import\s+.*\bpipeline\b)|[\"']ganc\.pipeline[\"':]", re.M)


def test_no_module_below_the_pipeline_imports_it():
    allowed = {GANC / "pipeline.py", GANC / "cli.py"}
    offenders = [str(p.relative_to(GANC.parent)) for p in sorted(GANC.rglob("*.py"))
                 if p not in allowed and GANC / "commands" not in p.parents
                 and IMPORTS_PIPELINE.search(p.read_text())]
    assert offenders == [], f"these import ganc.pipeline: {offenders}"


def test_compress_opens_the_run_context_once_and_hands_it_to_every_stage(
        tmp_path, monkeypatch):
    from ganc import pipeline
    from ganc.resume import MARKER
    from ganc.store import open_store

    root = open_store(str(tmp_path / "store"))
    ctx = SimpleNamespace(root=root, run=root.run("once"), close=lambda: None)
    opened, seen = [], []

    def open_context(cfg, store=None):
        opened.append(cfg)
        return ctx

    def runner_of(self):
        def run(cfg, got, method):
            seen.append((self.name, got))
            return {"n": len(seen)}
        return run
    monkeypatch.setattr(pipeline, "open_context", open_context)
    monkeypatch.setattr(pipeline, "run_lease",
                        lambda cfg, store=None: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(pipeline, "ray_connection", lambda num_cpus=None: contextlib.nullcontext())
    monkeypatch.setattr(pipeline, "require", lambda *args, **kwargs: [])   # the checks
    monkeypatch.setattr(Stage, "import_code", lambda self: None)
    monkeypatch.setattr(Stage, "load_runner", runner_of)
    cfg = RunConfig()
    cfg.pipeline.stages = ["report", "teacher", "search"]
    out = pipeline.compress(cfg)
    assert len(opened) == 1
    assert [name for name, _ in seen] == ["teacher", "search", "report"]   # pipeline order
    assert all(got is ctx for _, got in seen)
    assert ctx.run.get_json(MARKER.format("search"))["n"] == 2
    assert set(out["stages"]) == {"teacher", "search", "report"}
    # markers without their artifacts: every stage runs again; with them: skipped
    ctx.run.put_json("report/summary.json", {"rows": []})
    seen.clear()
    again = pipeline.compress(cfg)
    assert [name for name, _ in seen] == ["teacher", "search"]
    assert again["stages"]["report"]["skipped"] is True
    assert stage("report").artifacts == ("report/summary.json",)
