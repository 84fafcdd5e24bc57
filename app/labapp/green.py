"""WSGI entry point for gevent servers: ``labapp.green:app``.

For ``gunicorn -k gevent`` and ``uwsgi --gevent N``, which monkey-patch the
standard library themselves; this module makes psycopg2 cooperative too, so a
query waits in the gevent hub instead of blocking every greenlet.
"""

from gevent import monkey

# uWSGI's --gevent-monkey-patch patches only after it has loaded the app, too
# late for the locks created while building it (--gevent-early-monkey-patch is
# in time); patch here unless the server already has.
if not monkey.is_module_patched("threading"):
    monkey.patch_all()

from psycogreen.gevent import patch_psycopg

from labapp import create_app

patch_psycopg()
app = create_app()
