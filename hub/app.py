"""The app factory. Nothing here runs at import; wsgi.py is the only module that builds an app then."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from hub.config import Config, load
from hub.runtime import Runtime


def create_app(config: Config | None = None, **overrides: Any) -> Flask:
    config = config.with_overrides(**overrides) if config else load(**overrides)
    app = Flask("hub", instance_path=str(config.instance_path))
    app.config["MAX_CONTENT_LENGTH"] = 5 * 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["tidings"] = Runtime(config)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from hub import api, web

    api.init_app(app)
    app.register_blueprint(web.blp)
    return app
