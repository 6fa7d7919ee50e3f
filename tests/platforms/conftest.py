"""Shared by the platform connectors' tests: fixed events, platform answers and golden files."""

from __future__ import annotations

import http
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from connectors.base import Customer, Event, Request
from connectors.http import redact

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
SPECS_DIR = Path(__file__).resolve().parents[1] / "specs"  # tests/specs: official request schemas

ADA = Customer(
    email="ada@example.com", phone="+14155550100", first_name="Ada", last_name="Lovelace", external_id="cus_42"
)
# What hub.flows.event_properties makes of an order.fulfilled trigger with two items.
REVIEW_REQUEST = Event(
    id="3f6c1d2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
    name="Acme - Review Request",
    type="review_request",
    occurred_at=datetime(2026, 3, 14, 15, 0, 0, tzinfo=UTC),
    customer=ADA,
    properties={
        "store": "Acme",
        "trigger": "order.fulfilled",
        "flow": "Post-purchase review request",
        "order_id": "1001",
        "items": [
            {
                "product_id": "p-1",
                "name": "Linen Shirt",
                "url": "https://acme.example.com/products/linen-shirt",
                "image_url": "https://cdn.acme.example.com/linen-shirt.jpg",
                "price": "49.00",
                "currency": "USD",
            },
            {"product_id": "p-2", "name": "Wool Scarf", "price": "19.00", "currency": "USD"},
        ],
    },
)
REVIEW_SUBMITTED = Event(
    id="9e8f7a6b5c4d3f6c1d2e9a8b7c0d1e2f3a4b5c6d",
    name="Acme - Review Submitted",
    type="review_submitted",
    occurred_at=datetime(2026, 3, 20, 9, 30, 15, 250000, tzinfo=UTC),
    customer=ADA,
    properties={
        "store": "Acme",
        "trigger": "review.submitted",
        "review": {"id": "r-1", "product_id": "p-1", "rating": 5, "title": "Lovely", "body": "Soft and cool."},
    },
)


def answer(status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> requests.Response:
    """A platform's answer, as connectors.http.HttpClient.send returns it."""
    response = requests.Response()
    response.status_code = status
    response.reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else ""
    response.headers.update(headers or {})
    if isinstance(body, str):
        response._content = body.encode()
    else:
        response._content = b"" if body is None else json.dumps(body).encode()
    response.encoding = "utf-8"
    return response


def assert_matches_golden(name: str, request: Request) -> None:
    """The redacted request equals tests/golden/<name>.json (TIDINGS_UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN_DIR / f"{name}.json"
    record = json.loads(json.dumps(redact(request)))
    if os.environ.get("TIDINGS_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.exists(), f"{path} is missing: run the tests with TIDINGS_UPDATE_GOLDEN=1 to write it"
    assert record == json.loads(path.read_text(encoding="utf-8"))


def keys_everywhere(value: Any) -> list[str]:
    """Every mapping key in a JSON value, at any depth."""
    if isinstance(value, Mapping):
        return [*value.keys(), *(k for v in value.values() for k in keys_everywhere(v))]
    if isinstance(value, list):
        return [k for v in value for k in keys_everywhere(v)]
    return []
