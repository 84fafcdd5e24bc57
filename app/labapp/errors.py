"""JSON errors for every failure a client can see; never a traceback."""

import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException

from labapp.db import Unavailable
from labapp.params import BadParameter

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """The slow API failed (502) or did not answer in time (504)."""

    def __init__(self, message, status=502):
        super().__init__(message)
        self.message = message
        self.status = status


def register(app):
    app.register_error_handler(BadParameter, _bad_parameter)
    app.register_error_handler(Unavailable, _unavailable)
    app.register_error_handler(UpstreamError, _upstream_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _bad_parameter(exc):
    return jsonify(error=exc.message, parameter=exc.parameter, status=400), 400


def _unavailable(exc):
    detail = " ".join(str(exc.__cause__ or "no detail").split())
    log.warning("503: %s (%s)", exc.reason, detail)
    response = jsonify(error=exc.reason, status=503)
    response.status_code = 503
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _upstream_error(exc):
    log.warning("%d from upstream: %s", exc.status, exc.message)
    return jsonify(error=exc.message, status=exc.status), exc.status


def _http_error(exc):
    # get_response() keeps the headers that belong to the error, such as Allow on a 405.
    response = exc.get_response()
    response.set_data(jsonify(error=exc.name, message=exc.description, status=exc.code).get_data())
    response.content_type = "application/json"
    return response


def _unexpected_error(exc):
    log.exception("unhandled error")
    return jsonify(error="Internal Server Error", status=500), 500
