"""Building a :class:`RunConfig`: from a dict or a YAML file (:func:`load_config`), with
``--set section.field=value`` overrides and command-line flags (:func:`set_field`); each
value coerced to its field's type and checked against its declared range."""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any, Optional

import yaml

from ..errors import ConfigError
from .checks import check_criterion, check_value, validate
from .run import RunConfig


def _coerce(value: Any, typ, where: str):
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if origin is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no",
                                                        "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            num = float(value) if isinstance(value, str) else value
            if typ is int:
                if not math.isfinite(float(num)) or float(num) != int(float(num)):
                    raise ValueError
                return int(float(num))
            return float(num)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    if typ is dict or origin is dict:
        return _coerce_resources(value, where)
    if typ is list or origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            value = [yaml.safe_load(v) for v in value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]            # --set prune.targets=0.1
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of fields, got {value!r}")
        return _build(typ, value, where)
    return value


RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def _coerce_resources(value: Any, where: str) -> dict:
    """A mapping of resource names to positive numbers (``scale.resources``)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{accel: 1}}, got {value!r}")
    out = {}
    for k, v in value.items():
        name = str(k).strip()
        if not name:
            raise ConfigError(f"{where}: empty resource name")
        if name in RESERVED_RESOURCES:
            raise ConfigError(f"{where}.{name}: set CPUs with scale.cpus_per_worker and GPUs "
                              "with scale.use_gpu; resources holds custom resources only")
        num = _coerce(v, float, f"{where}.{name}")
        if not math.isfinite(num) or num <= 0:
            raise ConfigError(f"{where}.{name}: expected a positive number, got {v!r}")
        out[name] = num
    return out


def _build(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown field {key!r}; known: {', '.join(sorted(names))}")
    kw = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kw)


def from_dict(data: dict, where: str = "config") -> RunConfig:
    return _build(RunConfig, data or {}, where)


def apply_override(cfg: RunConfig, assignment: str, where: str = "--set") -> RunConfig:
    """Apply ``section.field=value`` (value parsed as YAML) to ``cfg`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"{where} {assignment!r}: expected section.field=value")
    path, raw = assignment.split("=", 1)
    parts = path.strip().split(".")
    obj = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"{where} {assignment!r}: unknown field {'.'.join(parts[:i + 1])!r}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
    hints = typing.get_type_hints(type(obj))
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if hints[parts[-1]] is str and isinstance(value, (int, float)):
        value = raw.strip()     # as typed: YAML reads 16_16_32_16_32_32_16_16 as one int
    setattr(obj, parts[-1], check_value(obj, parts[-1], _coerce(value, hints[parts[-1]], path),
                                        path))
    return cfg



def set_field(cfg: RunConfig, path: str, value, where: str) -> RunConfig:
    """Set ``section.field`` from a command-line flag (``where``, e.g. ``--budget-macs``),
    coerced and checked like the config file's own value."""
    *sections, name = path.split(".")
    obj = cfg
    for part in sections:
        obj = getattr(obj, part)
    hints = typing.get_type_hints(type(obj))
    setattr(obj, name, check_value(obj, name, _coerce(value, hints[name], where), where))
    return cfg


def load_config(path: Optional[str] = None, overrides=(), store: Optional[str] = None) -> RunConfig:
    """Read a YAML config (or defaults), apply ``--set`` overrides and ``--store``."""
    data = {}
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{at}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
    cfg = from_dict(data, where=path or "config")
    for ov in overrides or ():
        apply_override(cfg, ov)
    if store:
        cfg.store.url = store
    return check_criterion(validate(cfg))
