"""Score-against-MACs figures: the search's (one per budget) and the report's (every
method's models), drawn the same way.

Below the stages, so that the search and the report share it. A figure is a row of
:class:`Panel` s, one a split: each panel's y axis names the criterion, its split and its
image count (``FID (search split, n=8)``), since a search-split FID and a val-split FID of
one model differ. The MACs axis is logarithmic with plain-number tick labels (``0.02G``,
``0.05G``), no minor labels, and as many ticks as fit without two labels overlapping
(checked on the drawn figure). Every :class:`Series` has its method's marker
(:func:`marker_of`) and an entry in its panel's legend.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional, Sequence

from .criteria import get_criterion

G = 1e9                       # MACs per tick unit
MARKERS = {"teacher": "s", "evolution": "o", "nsga2": "^", "random": "v",
           "prune-lds": "D", "exported": "*", "best": "*"}
SPARE_MARKERS = ("P", "X", "h", "<", ">", "p", "8")
# tick mantissas per decade, densest first; the first whose labels do not overlap is used
TICK_TIERS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,))
MAX_TICKS = 10
LABEL_GAP_PX = 3.0            # the least room between two tick labels


@dataclass
class Series:
    """Points of one method (a cloud of scored candidates, a front drawn as a line, or
    a few models drawn large) in one panel."""

    label: str
    macs: Sequence[float]
    values: Sequence[float]
    method: str = ""
    kind: str = "points"            # points | front | model
    color: Optional[str] = None


@dataclass
class Panel:
    """One axes: the values of one criterion on one split."""

    ylabel: str
    series: list[Series] = field(default_factory=list)
    budgets: Sequence[float] = ()   # MACs budgets, drawn as vertical lines


def value_label(criterion: str, split: Optional[str], n: Optional[int] = None) -> str:
    """The y-axis title: ``FID (search split, n=8)`` and which way is better."""
    crit = get_criterion(criterion or "fid")
    where = [f"{split} split" if split else "split not recorded"]
    if n:
        where.append(f"n={int(n)}")
    return f"{crit.label} ({', '.join(where)})\n{crit.direction}"


MACS_LABEL = "MACs, G = 1e9 (torchprofile convention; log scale)"


def marker_of(method: str, seen: dict) -> str:
    """The marker of ``method``: a fixed one for the known methods, else the next spare
    (remembered in ``seen`` so one figure gives a method one marker)."""
    if method in MARKERS:
        return MARKERS[method]
    if method not in seen:
        seen[method] = SPARE_MARKERS[len(seen) % len(SPARE_MARKERS)]
    return seen[method]


def tick_text(macs_g: float) -> str:
    """A plain-number label of GMACs (3 significant digits): ``0.02G``, ``1.5G``,
    ``200G``, ``0.0001G`` (never ``2x10^-2``)."""
    text = format(Decimal(f"{macs_g:.3g}"), "f")
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "G"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _draw_series(ax, s: Series, seen: dict) -> None:
    pts = [(m / G, v) for m, v in zip(s.macs, s.values) if _finite(m) and m > 0
           and _finite(v)]
    if not pts:
        return
    xs, ys = zip(*sorted(pts)) if s.kind == "front" else zip(*pts)
    marker = marker_of(s.method or s.label, seen)
    if s.kind == "front":
        ax.plot(xs, ys, "-", marker=marker, ms=4, color=s.color, label=s.label, zorder=3)
    elif s.kind == "model":
        ax.scatter(xs, ys, marker=marker, s=150 if marker == "*" else 60, color=s.color,
                   edgecolors="k", linewidths=0.6, label=s.label, zorder=5)
    else:
        ax.scatter(xs, ys, marker=marker, s=14, alpha=0.5, color=s.color, label=s.label,
                   zorder=2)


def _macs_range(panels: Sequence[Panel]) -> tuple[float, float]:
    xs = [m / G for p in panels for s in p.series for m, v in zip(s.macs, s.values)
          if _finite(m) and m > 0 and _finite(v)]
    xs += [b / G for p in panels for b in p.budgets if _finite(b) and b > 0]
    if not xs:
        return 0.1, 10.0
    return min(xs) / 1.3, max(xs) * 1.3


def _ticks(lo: float, hi: float, subs: Sequence[int], step: int = 1) -> list[float]:
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [float(f"{m * 10.0 ** e:.12g}") for e in range(first, last + 1) if e % step == 0
            for m in subs if lo <= m * 10.0 ** e <= hi]


def tick_candidates(lo: float, hi: float) -> list[list[float]]:
    """Tick values in ``[lo, hi]`` (GMACs), densest first: each tier of
    :data:`TICK_TIERS`, then one decade in 2, 3, 5, 10; at most :data:`MAX_TICKS` each."""
    out: list[list[float]] = []
    for ticks in [_ticks(lo, hi, subs) for subs in TICK_TIERS] + \
            [_ticks(lo, hi, (1,), step) for step in (2, 3, 5, 10)]:
        if ticks and len(ticks) <= MAX_TICKS and ticks not in out:
            out.append(ticks)
    return out or [[float(f"{math.sqrt(lo * hi):.2g}")]]


def overlapping(fig, ax) -> bool:
    """Whether two of ``ax``'s x tick labels overlap on the drawn figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()
                    if t.get_visible() and t.get_text()), key=lambda b: b.x0)
    return any(b.x0 - a.x1 < LABEL_GAP_PX for a, b in zip(boxes, boxes[1:]))


def macs_axis(fig, ax, lo: float, hi: float) -> list[float]:
    """A log MACs axis over ``[lo, hi]`` GMACs: plain-number labels, no minor labels,
    the densest tier of ticks whose labels do not overlap; returns the ticks."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # deferred: matplotlib
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ticks: list[float] = []
    for ticks in tick_candidates(lo, hi):
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        if not overlapping(fig, ax):
            break
    return ticks


def figure(panels: Sequence[Panel], title: str = ""):
    """The figure (a matplotlib Figure, not registered with pyplot): the panels side by
    side on one MACs range, each with its legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib
    from matplotlib.figure import Figure  # deferred: matplotlib
    panels = [p for p in panels if any(_finite(v) for s in p.series for v in s.values)] \
        or list(panels[:1])
    fig = Figure(figsize=(6.4 * len(panels), 4.6), dpi=100)
    FigureCanvasAgg(fig)            # drawn off-screen: tick labels are measured on it
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    lo, hi = _macs_range(panels)
    seen: dict = {}
    for ax, panel in zip(axes, panels):
        for s in panel.series:
            _draw_series(ax, s, seen)
        for i, b in enumerate(b for b in panel.budgets if _finite(b) and b > 0):
            ax.axvline(b / G, color="gray", ls="--", lw=1,
                       label="MACs budget" if i == 0 else None)
        ax.set_xlabel(MACS_LABEL)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    for _ in range(2):          # the layout moves the axes: check the ticks again after it
        fig.tight_layout()
        for ax in axes:
            macs_axis(fig, ax, lo, hi)
    return fig


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


__all__ = ["Series", "Panel", "figure", "png", "value_label", "marker_of", "macs_axis",
           "tick_candidates", "tick_text", "overlapping", "MARKERS", "MACS_LABEL"]
