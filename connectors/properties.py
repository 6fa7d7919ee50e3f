"""Shaping the hub's event properties for platforms that read only top-level scalars.

Segments, SMS bodies and template languages (Liquid, Handlebars, merge tags) on most platforms cannot reach
into the ``items`` list or the nested ``review``, so connectors send flat copies of the first product's and
the review's fields beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def first_product(properties: Mapping[str, Any], *, image_as: tuple[str, ...] = ()) -> dict[str, Any]:
    """Flat copies of the first item's and the review's fields, leaving out the empty ones.

    ``image_as`` names extra keys that also get the first item's image (Attentive's ``mediaUrl``: the MMS
    image of a text message step).
    """
    items = properties.get("items")
    item = items[0] if isinstance(items, list) and items and isinstance(items[0], Mapping) else _NOTHING
    review = properties.get("review")
    if not isinstance(review, Mapping):
        review = _NOTHING
    image = item.get("image_url")
    # Plain statements rather than comprehensions: every event of a bulk request goes through here.
    flat = {
        "product_id": item.get("product_id") or review.get("product_id"),
        "product_name": item.get("name"),
        "product_url": item.get("url"),
        "product_image_url": image,
    }
    for name in image_as:
        flat[name] = image
    flat["review_rating"] = review.get("rating")
    flat["review_title"] = review.get("title")
    flat["review_body"] = review.get("body")
    return {key: value for key, value in flat.items() if value is not None and value != ""}


_NOTHING: Mapping[str, Any] = {}
