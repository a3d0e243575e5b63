"""Errors that reach the user as one line (the CLI prints them without a traceback)."""


class GancError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ConfigError(GancError):
    """A bad config value: names the field (or position) and the allowed values."""


class DataError(GancError):
    """A missing, empty or unreadable dataset path or image."""


class WeightsError(GancError):
    """A checkpoint that cannot be read or does not fit the architecture."""
