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
    # POST /tasks: the Celery broker, redis://:PASSWORD@HOST:6379/0. Unset, POST
    # /tasks answers 503 and the rest of the app works; the worker refuses to start.
    BROKER_URL = None
    # Retries of a task that failed for a transient reason (upstream or
    # database unreachable); it fails for good after TASK_MAX_RETRIES + 1 attempts.
    TASK_MAX_RETRIES = 3
    # Seconds a task may run: the worker kills it then (a soft limit at 90 %
    # lets it record "failed" first).
    TASK_TIME_LIMIT = 30
    # Seconds after which Redis hands a delivered but unacknowledged task to
    # another worker (the first one died): must exceed TASK_TIME_LIMIT.
    TASK_VISIBILITY_TIMEOUT = 60


DB_MODES = ("naive", "pool")
# (setting, type, smallest valid value)
_NUMBERS = (
    ("DB_POOL_MIN", int, 0),
    ("DB_POOL_MAX", int, 1),
    ("DB_POOL_TIMEOUT", float, 0),
    ("DB_CONNECT_TIMEOUT", int, 1),
    ("TASK_MAX_RETRIES", int, 0),
    ("TASK_TIME_LIMIT", int, 1),
    ("TASK_VISIBILITY_TIMEOUT", int, 2),
)
BROKER_SCHEMES = ("redis://", "rediss://")
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

    if config["TASK_VISIBILITY_TIMEOUT"] <= config["TASK_TIME_LIMIT"]:
        raise ValueError(
            "LABAPP_TASK_VISIBILITY_TIMEOUT must be greater than LABAPP_TASK_TIME_LIMIT, or "
            "Redis hands a task that is still running to a second worker; got "
            f"visibility timeout {config['TASK_VISIBILITY_TIMEOUT']} s, "
            f"time limit {config['TASK_TIME_LIMIT']} s"
        )

    level = str(config["LOG_LEVEL"]).upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"LABAPP_LOG_LEVEL is not a logging level: {config['LOG_LEVEL']!r}")
    config["LOG_LEVEL"] = level

    for key in ("DATABASE_URL", "UPSTREAM_URL"):
        config[key] = str(config[key])
    config["BROKER_URL"] = _broker_url(config["BROKER_URL"])


def _broker_url(value):
    """None when unset or empty; otherwise a redis:// or rediss:// URL."""
    if value is None or value == "":
        return None
    url = str(value)
    if not url.startswith(BROKER_SCHEMES):
        # Never echo the URL: it carries the Redis password.
        scheme = url.partition("://")[0] if "://" in url else "no scheme"
        raise ValueError(
            f"LABAPP_BROKER_URL must be a {' or '.join(BROKER_SCHEMES)} URL; got {scheme!r}"
        )
    return url


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
