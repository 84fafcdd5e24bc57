"""The application factory behind ``labapp.create_app``."""

import logging

from flask import Flask

from labapp import broker, errors, schema, tasks, timing, views
from labapp import config as settings
from labapp.db import make_database


def create_app(config=None):
    app = Flask("labapp", static_folder=None)
    app.config.from_object(settings.DefaultConfig)
    app.config.from_prefixed_env("LABAPP")
    if config:
        app.config.from_mapping(config)
    settings.validate(app.config)

    # The servers' own logging may already own the root logger; basicConfig
    # then leaves it alone and our records go through theirs.
    logging.basicConfig(
        level=app.config["LOG_LEVEL"],
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    logging.getLogger("labapp").setLevel(app.config["LOG_LEVEL"])

    # Built now, connected on first use: nothing touches PostgreSQL here.
    app.extensions["labapp.db"] = make_database(app.config)
    # POST /tasks publishes through it; None without LABAPP_BROKER_URL. It
    # connects to Redis on the first publish, not here.
    app.extensions["labapp.celery"] = broker.make_celery(app.config)
    app.register_blueprint(views.bp)
    app.register_blueprint(tasks.bp)
    errors.register(app)
    app.cli.add_command(schema.init_db_command)
    # a request nginx stamped is answered with where its time went on this host
    app.wsgi_app = timing.ServerTiming(app.wsgi_app)
    return app
