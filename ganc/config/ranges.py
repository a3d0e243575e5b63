"""The declared ranges of numeric config fields: :class:`Range`, and the field types that
carry one (``PosInt``, ``Count``, ``Ratio``...), read by :func:`ganc.config.validate`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field (of each item, for a list field), declared in
    the field's type: ``batch_size: PosInt = 1``. :func:`validate` checks every numeric
    field against it; any float field, ranged or not, must be finite."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False          # lo itself is excluded
    hi_open: bool = False

    def admits(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def describe(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi}"
        if lo and hi:
            return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}" \
                   f"{')' if self.hi_open else ']'}"
        return lo or hi or "finite"


MAX_SEED = 2 ** 32 - 1             # numpy's seeds are 32-bit
PosInt = Annotated[int, Range(1)]              # sizes, counts of things that must exist
Count = Annotated[int, Range(0)]               # 0 allowed (0: off / all / default)
Seed = Annotated[int, Range(0, MAX_SEED)]
Positive = Annotated[float, Range(0, lo_open=True)]   # learning rates, bandwidths, budgets
Weight = Annotated[float, Range(0)]            # loss weights, noise levels (0: off)
Prob = Annotated[float, Range(0, 1)]
Ratio = Annotated[float, Range(0, 1, lo_open=True)]   # (0, 1]: MACs ratios, shares
Beta = Annotated[float, Range(0, 1, hi_open=True)]    # Adam beta1, dropout
Ratios = Annotated[list, Range(0, 1, lo_open=True)]   # a list field: the range of each item
Widths = Annotated[list, Range(1)]
Budgets = Annotated[list, Range(0, lo_open=True)]  # MACs budgets: each positive
