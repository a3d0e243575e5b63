"""Argument types shared by every command: counts, positive numbers and devices, each
refused at argument parsing in one line naming the option and the value."""
from __future__ import annotations

import argparse
import math
import re

from ..errors import ConfigError

DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
DEVICES = "auto, cpu, cuda or cuda:N"


def whole(minimum: int):
    """An argparse type: a whole number >= ``minimum`` (``whole(1)``: a count)."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be >= {minimum}")
        return value
    parse.__name__ = f"int >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value} is not a finite number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: must be > 0")
    return value


positive_float.__name__ = "float > 0"
count = whole(1)
count_or_zero = whole(0)


def device(text: str) -> str:
    """An argparse type: auto, cpu, cuda or cuda:N (whether it exists: :func:`resolve_device`)."""
    text = str(text).strip()
    if not DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use {DEVICES}")
    return text


device.__name__ = "device"


def resolve_device(name: str, flag: str = "--device"):
    """The ``torch.device`` of a checked device name; one line when CUDA (or GPU N) is not
    on this machine."""
    import torch  # deferred: torch
    if not DEVICE_RE.match(str(name)):
        raise ConfigError(f"{flag} {name!r} is not a device; use {DEVICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= n:
            have = f"{n} CUDA device(s) (cuda:0 to cuda:{n - 1})" if n else "no CUDA device"
            raise ConfigError(f"{flag} {name}: this machine has {have}; use {DEVICES}")
    return torch.device(name)
