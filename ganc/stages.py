"""The stages of ``ganc compress``, each declared in one place, in pipeline order.

A :class:`Stage` says what the pipeline, resume and the CLI need to know of a stage: its
name, the config sections its result depends on, its upstream stages, what it leaves in
the run folder, what it fingerprints when it resumes its own work, the code it runs and
how it is called (``runner``: a ``module:function`` path into :mod:`ganc.runners`,
imported only when the stage runs). This module imports nothing of ganc: the config
takes its stage names from here (``ganc.config.PIPELINE_STAGES``), and the stages
themselves never import the pipeline (resume and markers: :mod:`ganc.resume`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple = ()          # config sections its result depends on (with upstream's)
    upstream: tuple = ()          # stages whose outputs it reads
    outputs: tuple = ()           # run keys it writes; removed by --restart-from
    artifacts: tuple = ()         # keys a finished stage must have left (markers never count)
    units: tuple = ()             # commit units it must have left (counted by manifest)
    given_by: str = ""            # a config field that, when set, is the stage's result:
                                  # then it leaves no artifacts
    resume_sections: tuple = ()   # sections its own resumable work is fingerprinted by
    modules: tuple = ()           # its code, imported up front (see ganc.pipeline)
    runner: str = ""              # "module:function" called as f(cfg, ctx, method)

    def load_runner(self) -> Callable:
        """The runner (its module is imported now: the stage code it calls is heavy)."""
        module, _, name = self.runner.partition(":")
        return getattr(importlib.import_module(module), name)

    def import_code(self) -> None:
        """Import the stage's code (and its runner's module)."""
        for m in (*self.modules, self.runner.partition(":")[0]):
            importlib.import_module(m)


STAGES = (
    Stage("teacher", sections=("seed", "data", "model", "teacher"),
          outputs=("teacher",), artifacts=("teacher/final.pt",), units=("teacher",),
          given_by="model.teacher_weights",
          modules=("ganc.train.teacher", "ganc.train.supernet"),
          runner="ganc.runners:teacher"),
    Stage("supernet", sections=("distill",), upstream=("teacher",),
          outputs=("supernet",), artifacts=("supernet/final.pt",),
          modules=("ganc.train.supernet",), runner="ganc.runners:supernet"),
    Stage("search", sections=("search", "fid"), upstream=("supernet",),
          outputs=("search", "best.json"),
          artifacts=("best.json", "search/results.parquet"),
          resume_sections=("seed", "data", "search", "fid"),
          modules=("ganc.search.driver", "ganc.search.searcher", "ganc.search.nsga2",
                   "ganc.search.report", "ganc.metrics.pool"),
          runner="ganc.runners:search"),
    Stage("prune", sections=("prune", "fid"), upstream=("teacher",),
          outputs=("prune",), artifacts=("prune/summary.json",),
          resume_sections=("seed", "data", "model", "prune", "fid"),
          modules=("ganc.prune.driver",), runner="ganc.runners:prune"),
    Stage("finetune", sections=("finetune",), upstream=("search",),
          outputs=("finetune",), artifacts=("finetune/result.json",),
          resume_sections=("seed", "data", "finetune"),
          modules=("ganc.search.finetune",), runner="ganc.runners:finetune"),
    Stage("export", upstream=("finetune",), outputs=("export",), units=("export",),
          modules=("ganc.export",), runner="ganc.runners:export"),
    Stage("report", sections=("pipeline",), upstream=("search", "prune", "export"),
          outputs=("report",), artifacts=("report/summary.json",),
          modules=("ganc.report",), runner="ganc.runners:report"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The declaration of stage ``name`` (KeyError for an unknown one: callers validate)."""
    return _BY_NAME[name]


__all__ = ["Stage", "STAGES", "STAGE_NAMES", "stage"]
