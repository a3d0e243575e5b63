"""Building a :class:`RunConfig`: from a dict or a YAML file (:func:`load_config`), with
``--set section.field=value`` overrides and command-line flags (:func:`set_field`); each
value coerced to its field's type and checked against its declared range."""
from __future__ import annotations

import dataclasses
import datetime
import math
import os
import typing
from typing import Any, Optional

import yaml

from ..errors import ConfigError, one_line
from .checks import _declared, check_criterion, check_value, hints, show, validate
from .run import RunConfig


def _coerce(value: Any, typ, where: str):
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if origin is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if typ is bool:
        return _coerce_bool(value, where)
    if typ in (int, float):
        return _coerce_number(value, typ, where)
    if typ is str:
        if not isinstance(value, _SCALARS) and value is not None:
            raise ConfigError(f"{where}: expected a string, got {show(value)}")
        return "" if value is None else str(value)
    if typ is dict or origin is dict:
        return _coerce_resources(value, where)
    if typ is list or origin is list:
        return _coerce_list(value, where)
    if dataclasses.is_dataclass(typ):
        if value is None:              # a section left empty (`data:`): its defaults
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of fields, got {show(value)}")
        return _build(typ, value, where)
    return value


_SCALARS = (str, int, float, bool, datetime.date)   # what YAML reads as one plain value


def _coerce_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no",
                                                    "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{where}: expected true/false, got {show(value)}")


def _coerce_number(value: Any, typ, where: str):
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {show(value)}")
    try:
        if not isinstance(value, (int, float, str)):
            raise TypeError
        num = float(value) if isinstance(value, str) else value
        if typ is int:
            if isinstance(num, int):
                return num
            if not math.isfinite(num) or num != int(num):
                raise ValueError
            return int(num)
        return float(num)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {show(value)}") from None


def _coerce_list(value: Any, where: str, numeric: bool = False) -> list:
    """A list as given; text (``--targets 0.1,0.2``, or a flow list ``[a, b]`` YAML could
    not read) split at commas. A ``numeric`` list's items that read as numbers become
    numbers (its range is checked by :func:`check_value`; ``3e9`` is text to YAML 1.1, a
    number here); the other lists hold names (text)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        value = [v.strip() for v in text.split(",") if v.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]            # --set prune.targets=0.1
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {show(value)}")
    kind = "a number" if numeric else "a name"
    for item in value:
        if not isinstance(item, _SCALARS):
            raise ConfigError(f"{where}: item {show(item)} is not {kind}")
    return [_number_or_text(v) if numeric else str(v) for v in value]


def _number_or_text(item):
    """``item``, or the number its text reads as (``'3e9'``, ``'0x10'`` stays text)."""
    if not isinstance(item, str):
        return item
    for parse in (int, float):
        try:
            return parse(item)
        except ValueError:
            pass
    return item


def _coerce_field(cls, name: str, value: Any, where: str):
    """``value`` for field ``name`` of the dataclass ``cls``, coerced to its type."""
    typ = hints(cls)[name]
    if typ is list or typing.get_origin(typ) is list:
        return _coerce_list(value, where, numeric=_declared(cls, name)[1] is not None)
    return _coerce(value, typ, where)


RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def _coerce_resources(value: Any, where: str) -> dict:
    """A mapping of resource names to positive numbers (``scale.resources``)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{accel: 1}}, got {show(value)}")
    out = {}
    for k, v in value.items():
        name = str(k).strip()
        if not name or not name.isprintable():
            raise ConfigError(f"{where}: resource name {show(k)} is empty or not printable")
        if name in RESERVED_RESOURCES:
            raise ConfigError(f"{where}.{name}: set CPUs with scale.cpus_per_worker and GPUs "
                              "with scale.use_gpu; resources holds custom resources only")
        num = _coerce(v, float, f"{where}.{name}")
        if not math.isfinite(num) or num <= 0:
            raise ConfigError(f"{where}.{name}: expected a positive number, got {show(v)}")
        out[name] = num
    return out


def _build(cls, data: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown field {show(key)}; known: "
                              + ", ".join(sorted(names)))
    kw = {k: _coerce_field(cls, k, v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kw)


def from_dict(data: dict, where: str = "config") -> RunConfig:
    return _build(RunConfig, data or {}, where)


_YAML_ERRORS = (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError)
# beside YAMLError, PyYAML's constructors raise ValueError (a date 2020-13-45, an int past
# Python's 4300-digit limit), TypeError and OverflowError; deep nesting, RecursionError


def apply_override(cfg: RunConfig, assignment: str, where: str = "--set") -> RunConfig:
    """Apply ``section.field=value`` (value parsed as YAML) to ``cfg`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"{where} {show(assignment)}: expected section.field=value")
    path, raw = assignment.split("=", 1)
    key = path.strip()
    parts = key.split(".")
    obj = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"{where} {show(assignment)}: unknown field "
                              f"{show('.'.join(parts[:i + 1]))}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
    name = parts[-1]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except _YAML_ERRORS:
        value = raw
    if hints(type(obj))[name] is str and isinstance(value, _SCALARS) \
            and not isinstance(value, str):
        value = raw.strip()     # as typed: YAML reads 16_16_32_16_32_32_16_16 as one int
    setattr(obj, name, check_value(obj, name, _coerce_field(type(obj), name, value, key), key))
    return cfg


def set_field(cfg: RunConfig, path: str, value, where: str) -> RunConfig:
    """Set ``section.field`` from a command-line flag (``where``, e.g. ``--budget-macs``),
    coerced and checked like the config file's own value."""
    *sections, name = path.split(".")
    obj = cfg
    for part in sections:
        obj = getattr(obj, part)
    setattr(obj, name, check_value(obj, name, _coerce_field(type(obj), name, value, where),
                                   where))
    return cfg


def _read_yaml(path: str) -> dict:
    """The mapping of sections in the YAML file ``path``; one line naming the file when it
    cannot be read, is not YAML or holds something else."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
    except _YAML_ERRORS as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else \
            " (nested too deeply)" if isinstance(e, RecursionError) else f" ({one_line(e)})"
        raise ConfigError(f"config file {path} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def load_config(path: Optional[str] = None, overrides=(), store: Optional[str] = None) -> RunConfig:
    """Read a YAML config (or defaults), apply ``--set`` overrides and ``--store``."""
    cfg = from_dict(_read_yaml(path) if path else {}, where=path or "config")
    for ov in overrides or ():
        apply_override(cfg, ov)
    if store:
        cfg.store.url = store
    return check_criterion(validate(cfg))
