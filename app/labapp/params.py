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


def seconds(values, name, default=None):
    """A number of seconds in 0..MAX_DELAY from a mapping of parameters."""
    value = values.get(name)
    if value is None or value == "":
        if default is None:
            raise BadParameter(name, f"'{name}' is required (seconds, 0 to {MAX_DELAY:g})")
        return default
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise BadParameter(name, f"'{name}' must be a number of seconds") from None
    if not math.isfinite(number) or not 0 <= number <= MAX_DELAY:
        raise BadParameter(name, f"'{name}' must be between 0 and {MAX_DELAY:g} seconds")
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
