"""The store's own settings: its time zone and quiet hours."""

from __future__ import annotations

from typing import Any

from hub import stores
from hub.api import Blueprint, authenticate, current_store, db_session
from hub.models import Store
from schemas.stores import StoreOut, StorePatch

blp = Blueprint("store", __name__, description="The store the API token belongs to, and its settings.")
blp.before_request(authenticate)


@blp.route("/store", methods=["GET"])
@blp.response(200, StoreOut)
def get_store() -> Any:
    return stores.settings(db_session().get_one(Store, current_store().id))


@blp.route("/store", methods=["PATCH"])
@blp.arguments(StorePatch)
@blp.response(200, StoreOut)
@blp.alt_response(422, description="An unknown time zone, or quiet hours that are not HH:MM")
def patch_store(data: dict[str, Any]) -> Any:
    """Set the time zone (an IANA name) and the quiet hours, or turn them off with `"quiet_hours": null`.

    Quiet hours hold back what leads to a text message (SMS, and apps whose events start SMS), or everything with
    `applies_to: all`: an action due inside them waits until they end, in the store's time zone. Test events and
    Send now are not held back.
    """
    session = db_session()
    store = stores.change_settings(session, session.get_one(Store, current_store().id), data)
    session.commit()
    return stores.settings(store)
