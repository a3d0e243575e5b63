"""Errors that reach the user as one line (the CLI prints them without a traceback)."""


class GancError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ConfigError(GancError):
    """A bad config value: names the field (or position) and the allowed values."""


class DataError(GancError):
    """A missing, empty or unreadable dataset path or image."""


class WeightsError(GancError):
    """A checkpoint that cannot be read or does not fit the architecture."""


def one_line(e: BaseException, *, last: bool = False, limit: int = 300) -> str:
    """The first (``last``: the last) non-blank line of an error's text, or its type's
    name when it has none, cut to ``limit`` characters."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1 if last else 0] if lines else type(e).__name__)[:limit]


class Findings:
    """What a check looked at (``checked``: lines to print) and what it found wrong
    (``problems``: the one-line errors, in the order found)."""

    def __init__(self):
        self.checked: list[str] = []
        self.problems: list[GancError] = []

    def attempt(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, or None with its GancError recorded as a problem."""
        try:
            return fn(*args, **kwargs)
        except GancError as e:
            self.problems.append(e)
            return None

    def extend(self, other: "Findings") -> "Findings":
        self.checked += other.checked
        self.problems += other.problems
        return self

    def raise_first(self) -> None:
        """The first problem, raised (a command refuses to start on it)."""
        if self.problems:
            raise self.problems[0]
