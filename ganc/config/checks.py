"""Validation: every numeric field finite and in its declared range (:func:`validate`,
:func:`check_value`) and ``search.criterion`` fit for the data (:func:`check_criterion`)."""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Annotated, Optional

from ..criteria import check_criterion as _check_criterion
from ..errors import ConfigError
from .ranges import Range
from .run import RunConfig


def _declared(cls, name: str):
    """(base type, Range or None) of a field, from its annotation."""
    hint = typing.get_type_hints(cls, include_extras=True)[name]
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, next((e for e in extras if isinstance(e, Range)), None)
    return hint, None


def _number_problem(v, base, rng: Optional[Range]) -> Optional[str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "is not a number"
    if not math.isfinite(v):
        return "is not a finite number"
    if base is int and v != int(v):
        return "is not an integer"
    if rng is not None and not rng.admits(v):
        return f"is out of range: must be {rng.describe()}"
    return None


def check_value(section, name: str, value, where: str):
    """``value`` for field ``name`` of the dataclass ``section`` (class or instance), checked
    against the field's declared range; one line naming ``where`` when it is not."""
    cls = section if isinstance(section, type) else type(section)
    base, rng = _declared(cls, name)
    if value is None:
        return value
    if base in (int, float):
        problem = _number_problem(value, base, rng)
        if problem:
            raise ConfigError(f"{where}: {value!r} {problem}")
    elif base is list and rng is not None:
        for item in value:
            problem = _number_problem(item, float, rng)
            if problem:
                raise ConfigError(f"{where}: item {item!r} {problem}")
    return value


def validate(cfg, prefix: str = ""):
    """Every numeric field of ``cfg`` (a RunConfig, or one section with its ``prefix`` such
    as ``"prune."``) finite and in its declared range; the first offender as one line
    naming the field (``data.batch_size: -1 is out of range: must be >= 1``)."""
    def walk(obj, prefix: str):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            where = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, where + ".")
            else:
                check_value(obj, f.name, value, where)
    walk(cfg, prefix)
    return cfg


LABEL_MAP_KINDS = ("camvid",)      # data kinds whose inputs are label maps (mIoU possible)


def check_criterion(cfg: RunConfig, method: Optional[str] = None) -> RunConfig:
    """``search.criterion`` is a searchable criterion, one needing label maps only on
    label-map data and, with ``method``, one that search method can rank by (one line;
    :func:`ganc.criteria.check_criterion`)."""
    _check_criterion(cfg.search.criterion, data_kind=cfg.data.kind,
                     label_map_kinds=LABEL_MAP_KINDS, method=method)
    return cfg

