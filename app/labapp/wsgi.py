"""WSGI entry point for threaded and process servers: ``labapp.wsgi:app``.

uWSGI, Gunicorn sync/gthread and ``flask --app labapp.wsgi run`` load this.
"""

from labapp import create_app

app = create_app()
