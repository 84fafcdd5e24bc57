"""Flask Deploy Lab: the application measured under every WSGI server.

This module deliberately imports nothing at the top: ``python -m
labapp.gevent_server`` imports the package before its own code runs, and it
must be able to monkey-patch before Flask, psycopg2 or socket are loaded.
"""


def create_app(config=None):
    """Build the Flask application; ``config`` overrides the ``LABAPP_*`` settings."""
    from labapp.factory import create_app as _create_app

    return _create_app(config)
