"""A summary.json row for the tests of report.repeats and report.compare."""


def summary_row(cell, **figures):
    """A summary.json row: a /slow cell at 100 users; figures override its numbers."""
    data = {
        "cell": cell,
        "config": cell.split("--")[0],
        "server": cell.split("--")[0],
        "db_mode": "pool",
        "endpoint": "slow",
        "users": 100,
        "delay_s": 1.0,
        "rps": 100.0,
        "p50_ms": 1000.0,
        "p99_ms": 1010.0,
        "efficiency": 1.0,
        "hey_rps": None,
        "hey_p99_ms": None,
    }
    data.update(figures)
    return data
