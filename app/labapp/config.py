"""Settings: defaults here, overridden by ``LABAPP_*`` environment variables."""

import logging


class DefaultConfig:
    # libpq connection URL or conninfo string.
    DATABASE_URL = "dbname=labapp"
    # Base URL of the slow third-party API that /slow calls.
    UPSTREAM_URL = "http://127.0.0.1:8081"
    # naive: connect per request; pool: ThreadedConnectionPool per process.
    DB_MODE = "naive"
    # psycopg2 keeps at most DB_POOL_MIN idle connections and closes the others
    # when they are returned, so set it equal to DB_POOL_MAX to avoid churn.
    DB_POOL_MIN = 1
    DB_POOL_MAX = 10
    # Seconds a request waits for a free pool slot before it gets a 503.
    DB_POOL_TIMEOUT = 0.5
    # Seconds to wait for PostgreSQL to accept a connection.
    DB_CONNECT_TIMEOUT = 5
    LOG_LEVEL = "INFO"


DB_MODES = ("naive", "pool")
# (setting, type, smallest valid value)
_NUMBERS = (
    ("DB_POOL_MIN", int, 0),
    ("DB_POOL_MAX", int, 1),
    ("DB_POOL_TIMEOUT", float, 0),
    ("DB_CONNECT_TIMEOUT", int, 1),
)
_KIND_NAMES = {int: "a whole number", float: "a number"}


def validate(config):
    """Normalise types in a Flask config and fail early, naming the variable, on bad values."""
    mode = config["DB_MODE"]
    if mode not in DB_MODES:
        raise ValueError(f"LABAPP_DB_MODE must be one of {', '.join(DB_MODES)}; got {mode!r}")

    for key, kind, minimum in _NUMBERS:
        config[key] = _number(key, config[key], kind, minimum)
    if config["DB_POOL_MIN"] > config["DB_POOL_MAX"]:
        raise ValueError(
            "LABAPP_DB_POOL_MAX must be at least LABAPP_DB_POOL_MIN; "
            f"got min={config['DB_POOL_MIN']} max={config['DB_POOL_MAX']}"
        )

    level = str(config["LOG_LEVEL"]).upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"LABAPP_LOG_LEVEL is not a logging level: {config['LOG_LEVEL']!r}")
    config["LOG_LEVEL"] = level

    for key in ("DATABASE_URL", "UPSTREAM_URL"):
        config[key] = str(config[key])


def _number(key, value, kind, minimum):
    # from_prefixed_env has already JSON-decoded the value: reject booleans and
    # fractions where a count is expected instead of silently truncating them.
    try:
        if isinstance(value, bool):
            raise TypeError
        number = kind(value)
        if not isinstance(value, str) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"LABAPP_{key} must be {_KIND_NAMES[kind]}; got {value!r}") from None
    if number < minimum:
        raise ValueError(f"LABAPP_{key} must be at least {minimum}; got {value!r}")
    return number
