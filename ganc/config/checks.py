"""Validation: every numeric field finite and in its declared range (:func:`validate`,
:func:`check_value`) and ``search.criterion`` fit for the data (:func:`check_criterion`)."""
from __future__ import annotations

import dataclasses
import functools
import math
import reprlib
import typing
from typing import Annotated, Optional

from ..criteria import check_criterion as _check_criterion
from ..errors import ConfigError
from ..space import PRESETS
from ..stages import STAGE_NAMES
from .inputs import DIRECTIONS, DataConfig
from .ranges import Range
from .run import RunConfig

LABEL_MAP_KINDS = ("camvid",)      # data kinds whose inputs are label maps (mIoU possible)

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60
_REPR.maxlevel = 3


def show(value) -> str:
    """``repr(value)`` for a one-line message, cut short (a 10,000-item list or a deeply
    nested mapping stays a few words)."""
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):    # an int past Python's 4300-digit str limit
        return f"<a {type(value).__name__}>"


@functools.lru_cache(maxsize=None)
def hints(cls, extras: bool = False) -> dict:
    """The field types of the dataclass ``cls`` (``extras``: with their ``Annotated``
    ranges), evaluated once per class (they are strings under ``from __future__``)."""
    return typing.get_type_hints(cls, include_extras=extras)


def _declared(cls, name: str):
    """(base type, Range or None) of a field, from its annotation."""
    hint = hints(cls, True)[name]
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, next((e for e in extras if isinstance(e, Range)), None)
    return hint, None


def _as_float(v) -> float:
    try:
        return float(v)
    except OverflowError:           # an int past the largest float
        return math.inf


def _number_problem(v, base, rng: Optional[Range]) -> Optional[str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "is not a number"
    if not math.isfinite(_as_float(v)) and (base is not int or isinstance(v, float)):
        return "is not a finite number"          # (a huge int is an int, not a float)
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
            raise ConfigError(f"{where}: {show(value)} {problem}")
    elif base is list and rng is not None:
        for item in value:
            problem = _number_problem(item, float, rng)
            if problem:
                raise ConfigError(f"{where}: item {show(item)} {problem}")
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
        if isinstance(obj, DataConfig):
            check_data(obj, prefix)
    walk(cfg, prefix)
    if isinstance(cfg, RunConfig):
        check_space(cfg)
        unknown = [s for s in cfg.pipeline.stages if s not in STAGE_NAMES]
        if unknown:
            raise ConfigError(f"pipeline.stages: unknown stage {show(unknown[0])}; stages: "
                              + ", ".join(STAGE_NAMES))
        if cfg.scale.cpu_crop_size:
            _check_sides(cfg.data, int(cfg.scale.cpu_crop_size), "scale.cpu_crop_size")
        check_crops(cfg)
    return cfg


SIDE_MULTIPLE = 4          # the ResNet generators halve the image twice (ganc.deploy)
LABEL_MAP_SIDE_MULTIPLE = 32   # SPADE: the label map is resized to 1/32 (ganc.nn.spade)


def check_data(data: DataConfig, prefix: str = "data.") -> None:
    """``direction`` one of AtoB / BtoA and ``crop_size`` a size the generators take, at
    load time (otherwise the first Ray worker to build a dataset or a net fails)."""
    if data.direction not in DIRECTIONS:
        raise ConfigError(f"{prefix}direction: {show(data.direction)} is not one of: "
                          + ", ".join(DIRECTIONS))
    _check_sides(data, int(data.crop_size), f"{prefix}crop_size")


def _check_sides(data: DataConfig, width: int, where: str) -> None:
    """Images ``width`` wide (label-map data: ``aspect_ratio`` x that high) fit the nets."""
    if data.kind not in LABEL_MAP_KINDS:
        if width % SIDE_MULTIPLE:
            raise ConfigError(f"{where}: {width} is not a multiple of {SIDE_MULTIPLE} (the "
                              "generators downsample twice by 2)")
        return
    height, m = int(round(width * float(data.aspect_ratio))), LABEL_MAP_SIDE_MULTIPLE
    if width % m or height % m or height < m:
        raise ConfigError(f"{where}: {width} wide and data.aspect_ratio "
                          f"{data.aspect_ratio:g} make {width}x{height} (WxH) images; label-map "
                          f"data (SPADE) needs both sides multiples of {m}")


def _check_crop(data: DataConfig, crop: int, where: str, what: str) -> None:
    """A training crop ``crop`` wide (``where`` names its field, ``what`` the crops) is a
    side the generators take and is cut from the images resized to ``data.load_size``."""
    _check_sides(data, crop, where)
    load = int(data.load_size)
    if crop > load:
        raise ConfigError(f"{where}: {crop} is larger than data.load_size {load} ({what} "
                          "are cut from the images resized to it)")


def check_train_crop(cfg: RunConfig) -> None:
    """``data.train_crop_size`` (when set) a training crop the run can cut: what
    :func:`_check_crop` checks, and not on label-map data, whose training reads whole
    images resized to ``data.crop_size`` (the discriminator's and a U-Net's smallest side
    are checked before a command starts, :mod:`ganc.preflight`)."""
    data = cfg.data
    crop = int(data.train_crop_size)
    if not crop:
        return
    if data.kind in LABEL_MAP_KINDS and crop != int(data.crop_size):
        raise ConfigError(f"data.train_crop_size: {crop} on label-map data (data.kind "
                          f"{data.kind}), whose training reads whole images resized to "
                          f"data.crop_size {int(data.crop_size)}, not crops; leave it 0")
    _check_crop(data, crop, "data.train_crop_size", "the training crops")


def check_prune_crop(cfg: RunConfig) -> None:
    """``prune.crop_size`` (when set) a crop :func:`_check_crop` accepts (the agents'
    override of :func:`ganc.config.train_crop`; the discriminator's smallest side is
    checked before a command starts, :mod:`ganc.preflight`)."""
    crop = int(cfg.prune.crop_size)
    if crop:
        _check_crop(cfg.data, crop, "prune.crop_size", "the agents' crops")


def check_crops(cfg: RunConfig) -> None:
    """Both training crops (:func:`check_train_crop`, :func:`check_prune_crop`) against
    the config's ``data.load_size``: what a run checks again once its placement has
    scaled the sizes (``scale.cpu_crop_size``)."""
    check_train_crop(cfg)
    check_prune_crop(cfg)


def check_space(cfg: RunConfig) -> None:
    """``model.search_space`` a named space, unless ``distill.space_widths`` replaces it."""
    if not cfg.distill.space_widths and cfg.model.search_space not in PRESETS:
        raise ConfigError(f"model.search_space: {show(cfg.model.search_space)} is not one of: "
                          + ", ".join(sorted(PRESETS)) + " (or set distill.space_widths)")


def check_criterion(cfg: RunConfig, method: Optional[str] = None) -> RunConfig:
    """``search.criterion`` is a searchable criterion, one needing label maps only on
    label-map data and, with ``method``, one that search method can rank by (one line;
    :func:`ganc.criteria.check_criterion`)."""
    _check_criterion(cfg.search.criterion, data_kind=cfg.data.kind,
                     label_map_kinds=LABEL_MAP_KINDS, method=method)
    return cfg

