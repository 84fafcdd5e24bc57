"""Parsing of query and body parameters; anything invalid raises BadParameter.

Free of Flask so that the slow API can share it.
"""

import math

# Longest sleep any endpoint accepts: long enough for every experiment, short
# enough that a typo cannot park a worker for an hour.
MAX_DELAY = 60.0


class BadParameter(Exception):
    """A request parameter is missing or invalid (400)."""

    def __init__(self, parameter, message):
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def seconds(values, name, default=None, maximum=MAX_DELAY):
    """A number of seconds in 0..maximum from a mapping of parameters."""
    value = values.get(name)
    if value is None or value == "":
        if default is None:
            raise BadParameter(name, f"'{name}' is required (seconds, 0 to {maximum:g})")
        return default
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise BadParameter(name, f"'{name}' must be a number of seconds") from None
    if not math.isfinite(number) or not 0 <= number <= maximum:
        raise BadParameter(name, f"'{name}' must be between 0 and {maximum:g} seconds")
    return number


def integer(values, name, default):
    """A whole number, or ``default`` when the parameter is absent or empty."""
    value = values.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadParameter(name, f"'{name}' must be a whole number") from None


def bounded_integer(values, name, default, low, high):
    """A whole number in low..high; ``default`` (which may be None) when absent or empty.

    Strict where ``integer`` is lenient: JSON booleans and fractions are refused.
    """
    value = values.get(name)
    if value is None or value == "":
        return default
    message = f"'{name}' must be a whole number from {low} to {high}"
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadParameter(name, message) from None
    if not low <= number <= high:
        raise BadParameter(name, message)
    return number


def choice(values, name, choices, default):
    """One of ``choices`` (strings); ``default`` when absent or empty."""
    value = values.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise BadParameter(name, f"'{name}' must be one of {', '.join(choices)}")
    return value


def only(values, allowed, context=""):
    """Refuse any parameter outside ``allowed``: a typo must not silently become a default."""
    unknown = sorted(str(name) for name in values if name not in allowed)
    if unknown:
        where = f" {context}" if context else ""
        raise BadParameter(
            unknown[0],
            f"unknown parameter '{unknown[0]}'{where}; accepted: {', '.join(sorted(allowed))}",
        )
