"""Criteria: the scores a sub-network is ranked by (FID, KID, mIoU), as one registry.

Each :class:`Criterion` says which way is better, how it is shown, what scoring it needs
(the Inception statistics, or the ESPNet-CamVid segmenter on label-map data) and whether
``search.criterion`` may name it. :func:`get_criterion` is the one lookup and
:func:`check_criterion` the one validation of a criterion (name, data, search method);
code elsewhere reads these attributes instead of testing a criterion's name.

    crit = get_criterion(cfg.search.criterion)
    best = crit.best_of(values); crit.better(after, before); crit.mode  # 'min' | 'max'

Adding a criterion: register one more :class:`Criterion` below (and have the FID pool's
:class:`ganc.metrics.pool.Score` carry its value in ``score_field``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from .errors import ConfigError

INCEPTION = "inception"     # needs the real images' Inception statistics
SEGMENTER = "segmenter"     # needs the ESPNet-CamVid segmenter and label-map ground truth
MAXIMISING_METHODS = ("evolution",)     # search methods that can rank by a maximised score


@dataclass(frozen=True)
class Criterion:
    """One criterion: its name (a results column and ``search.criterion`` value), its
    direction and display, what scoring it needs, and where it may be used."""

    name: str                       # the rows' column, best.json's key
    label: str                      # short display name: 'FID', 'mIoU'
    title: str                      # full display name: 'ESPNet-CamVid mIoU'
    higher_is_better: bool
    needs: str                      # INCEPTION | SEGMENTER
    score_field: str                # the attribute of a pool Score holding its value
    searchable: bool = True         # may be ``search.criterion``
    protocol: Optional[str] = None  # recorded as ``<name>_metric`` beside its value
    fmt: str = ".2f"                # how a value is printed

    @property
    def mode(self) -> str:
        """Tune's mode: ``max`` for a higher-is-better criterion, else ``min``."""
        return "max" if self.higher_is_better else "min"

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def verb(self) -> str:
        """What improving it means: raise or lower."""
        return "raise" if self.higher_is_better else "lower"

    @property
    def symbol(self) -> str:
        """The comparison of a better value with a worse one: ``>`` or ``<``."""
        return ">" if self.higher_is_better else "<"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def best_of(self, values: Iterable[float]) -> float:
        """The best of ``values`` (not empty)."""
        return max(values) if self.higher_is_better else min(values)

    def format(self, value: float) -> str:
        return format(value, self.fmt)


_REGISTRY: dict[str, Criterion] = {}


def register(criterion: Criterion) -> Criterion:
    """Add a criterion (its name must be new)."""
    if criterion.name in _REGISTRY:
        raise ConfigError(f"criterion {criterion.name!r} is already registered")
    _REGISTRY[criterion.name] = criterion
    return criterion


register(Criterion("fid", "FID", "FID", False, INCEPTION, "fid"))
register(Criterion("kid", "KID", "KID", False, INCEPTION, "kid_mean", searchable=False))
register(Criterion("miou", "mIoU", "ESPNet-CamVid mIoU", True, SEGMENTER, "miou",
                   protocol="ESPNet-CamVid mIoU"))


def criteria() -> list[Criterion]:
    """Every registered criterion, in registration order."""
    return list(_REGISTRY.values())


def names(searchable: bool = False) -> list[str]:
    """The known criteria's names (``searchable``: only those ``search.criterion`` takes)."""
    return [c.name for c in _REGISTRY.values() if c.searchable or not searchable]


def get_criterion(name: str) -> Criterion:
    """The criterion ``name``; one line naming the known ones when there is none."""
    crit = _REGISTRY.get(name)
    if crit is None:
        raise ConfigError(f"unknown criterion {name!r}; known: {', '.join(names())}")
    return crit


def minimised() -> list[str]:
    """Names of the criteria where lower is better (what a minimising searcher can use)."""
    return [c.name for c in _REGISTRY.values() if not c.higher_is_better]


def check_criterion(name: str, *, data_kind: Optional[str] = None,
                    label_map_kinds: Sequence[str] = (),
                    method: Optional[str] = None) -> Criterion:
    """The one validation of ``search.criterion`` (one-line errors): a searchable
    criterion; one that needs the segmenter only on label-map data (``data_kind`` one of
    ``label_map_kinds``; not checked without ``data_kind``); a maximised one only with a
    search ``method`` that can maximise (not checked without ``method``)."""
    crit = _REGISTRY.get(name)
    if crit is None or not crit.searchable:
        raise ConfigError(f"search.criterion {name!r} is not one of: "
                          f"{', '.join(names(searchable=True))}")
    if crit.needs == SEGMENTER and data_kind is not None and data_kind not in label_map_kinds:
        raise ConfigError(f"search.criterion {name} needs data with label maps (data.kind "
                          f"{', '.join(label_map_kinds)}); data.kind is {data_kind!r}")
    if method is not None and crit.higher_is_better and method not in MAXIMISING_METHODS:
        raise ConfigError(f"search.criterion {name!r} works with search.method "
                          f"{', '.join(MAXIMISING_METHODS)}; {method} minimises FID")
    return crit


__all__ = ["Criterion", "INCEPTION", "SEGMENTER", "MAXIMISING_METHODS", "register",
           "criteria", "names", "get_criterion", "minimised", "check_criterion"]
