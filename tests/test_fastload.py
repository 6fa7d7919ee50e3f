"""The fast paths of ingest give exactly what marshmallow gives: the loader of bulk triggers (or it hands the item
back to the schema), and the plain event payload."""

from __future__ import annotations

import copy
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import marshmallow as ma
import pytest

from schemas.events import CUSTOMER_KEYS, EventPayload, event_payload
from schemas.fastload import compile_loader
from schemas.triggers import BulkTriggerIn

SCHEMA = BulkTriggerIn()
FAST = compile_loader(SCHEMA)


class Reference:
    """marshmallow's own load, past TriggerIn.load's fast path."""

    @staticmethod
    def load(item: Any) -> Any:
        return ma.Schema.load(SCHEMA, item)


VALID: list[dict[str, Any]] = [
    {"type": "order.fulfilled", "customer": {"email": "ada@example.com"}, "order": {"id": "1"}},
    {
        "type": "order.delivered",
        "occurred_at": "2026-11-01T10:00:00+02:00",
        "customer": {"email": "ada@example.com", "phone": "+14155550123", "first_name": "Ada", "external_id": "c1"},
        "order": {
            "id": "1001",
            "items": [
                {
                    "product_id": "p-1",
                    "name": "Linen Shirt",
                    "url": "https://shop.example.com/p/1",
                    "image_url": "https://cdn.example.com/p1.jpg",
                    "price": "49.5",
                    "currency": "USD",
                },
                {"product_id": "p-2", "name": "Scarf", "price": 12},
            ],
        },
        "idempotency_key": "k-1",
    },
    {"type": "review.submitted", "customer": {"external_id": "c1"}, "review": {"id": "r1", "rating": 5, "body": "ok"}},
    {"type": "order.cancelled", "occurred_at": None, "customer": {"phone": "+14155550123"}, "order": {"id": "9"}},
]

INVALID: list[Any] = [
    [],
    "order.fulfilled",
    {"type": "order.fulfilled", "customer": {"email": "ada@example.com"}},  # no order
    {"type": "order.shipped", "customer": {"email": "ada@example.com"}, "order": {"id": "1"}},
    {"type": "order.fulfilled", "customer": {}, "order": {"id": "1"}},
    {"type": "order.fulfilled", "customer": {"email": "not-an-email"}, "order": {"id": "1"}},
    {"type": "order.fulfilled", "customer": {"email": "a@example.com"}, "order": {"id": ""}},
    {"type": "order.fulfilled", "customer": {"email": "a@example.com"}, "order": {"id": "1", "items": [{}]}},
    {"type": "order.fulfilled", "customer": {"email": "a@example.com"}, "order": {"id": "1", "items": "x"}},
    {"type": "order.fulfilled", "customer": {"email": "a@example.com"}, "order": {"id": "1"}, "extra": 1},
    {"type": "order.fulfilled", "customer": {"email": "a@example.com", "nick": "x"}, "order": {"id": "1"}},
    {"type": "order.fulfilled", "customer": None, "order": {"id": "1"}},
    {"type": "order.fulfilled", "customer": {"phone": "555"}, "order": {"id": "1"}},
    {"type": "order.fulfilled", "occurred_at": "2026-11-01T10:00:00", "customer": {"email": "a@example.com"}},
    {"type": "review.submitted", "customer": {"email": "a@example.com"}, "review": {"rating": 6}},
    {"type": 5, "customer": {"email": "a@example.com"}, "order": {"id": "1"}},
    {
        "type": "order.fulfilled",
        "customer": {"email": "a@example.com"},
        "order": {"id": "1", "items": [{"product_id": "p", "name": "n", "price": "-1"}]},
    },
    {
        "type": "order.fulfilled",
        "customer": {"email": "a@example.com"},
        "order": {"id": "1", "items": [{"product_id": "p", "name": "n"}] * 501},
    },
]


@pytest.mark.parametrize("item", VALID)
def test_a_valid_trigger_loads_fast_to_exactly_what_the_schema_loads(item: dict[str, Any]) -> None:
    fast = FAST(copy.deepcopy(item))
    assert fast is not None
    assert fast == Reference.load(copy.deepcopy(item))


@pytest.mark.parametrize("item", INVALID)
def test_an_invalid_trigger_is_handed_back_to_the_schema(item: Any) -> None:
    assert FAST(copy.deepcopy(item)) is None
    with pytest.raises(ma.ValidationError):
        Reference.load(copy.deepcopy(item))


SCALARS: list[Any] = [None, 0, 5, 6, 600, -1, "", "x", "ada@example.com", "+14155550123", "2026-11-01T10:00:00Z", True]
KEYS = ["type", "occurred_at", "customer", "order", "review", "email", "phone", "external_id", "id", "items", "rating",
        "idempotency_key", "name", "price", "product_id", "other"]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))]
    if depth < 2 and roll < 0.3:
        return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))}
    return rng.choice(SCALARS)


def mutated(rng: random.Random) -> Any:
    """A valid trigger with one value somewhere replaced, added or removed."""
    item = copy.deepcopy(rng.choice(VALID))
    node: Any = item
    while isinstance(node, dict) and node and rng.random() < 0.6:
        child = node[rng.choice(list(node))]
        if isinstance(child, list) and child:
            child = rng.choice(child)
        if not isinstance(child, dict):
            break
        node = child
    if isinstance(node, dict):
        key = rng.choice([*node, *KEYS]) if node else rng.choice(KEYS)
        if rng.random() < 0.3:
            node.pop(key, None)
        else:
            node[key] = random_value(rng)
    return item


def test_whatever_the_input_the_fast_loader_agrees_with_the_schema_or_abstains() -> None:
    rng = random.Random(5)
    loaded_fast = 0
    for _ in range(2000):
        item = mutated(rng)
        fast = FAST(copy.deepcopy(item))
        try:
            expected = Reference.load(copy.deepcopy(item))
        except ma.ValidationError:
            assert fast is None, item
        else:
            assert fast is None or fast == expected, item
            loaded_fast += fast is not None
    assert loaded_fast > 100  # the mutations left many valid: the comparison was made, not skipped


def test_a_schema_with_hooks_it_does_not_run_is_never_loaded_fast() -> None:
    class Shouty(ma.Schema):
        name = ma.fields.String()

        @ma.post_load
        def shout(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            return {"name": data["name"].upper()}

    assert compile_loader(Shouty())({"name": "ada"}) is None


@pytest.mark.parametrize(
    "customer",
    [{"email": "ada@example.com"}, {"phone": "+14155550123", "first_name": "Ada", "external_id": "c1", "x": "y"}, {}],
)
def test_the_plain_event_payload_is_what_the_event_schema_dumps(customer: dict[str, Any]) -> None:
    values = {
        "id": "k1",
        "name": "Acme - Review Request",
        "type": "review_request",
        "occurred_at": datetime(2026, 11, 1, 10, 0, 30, 1234, tzinfo=timezone(timedelta(hours=2))),
        "customer": customer,
        "properties": {"order_id": "1001", "items": [{"product_id": "p-1", "price": "49.00"}], "flow": "F"},
        "test": False,
    }
    schema_input = {**values, "customer": {k: customer.get(k) for k in CUSTOMER_KEYS}}
    assert event_payload(**values) == EventPayload().dump(schema_input)
    assert (
        event_payload(**{**values, "test": True})["test"] is EventPayload().dump({**schema_input, "test": True})["test"]
    )


def test_the_trigger_schemas_own_load_takes_the_fast_path_for_valid_triggers_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = BulkTriggerIn()
    slow: list[Any] = []
    original = ma.Schema.load
    monkeypatch.setattr(ma.Schema, "load", lambda self, *a, **k: slow.append(self) or original(self, *a, **k))
    assert schema.load(copy.deepcopy(VALID[1])) == Reference.load(copy.deepcopy(VALID[1]))
    assert schema not in slow  # marshmallow's load ran for the reference only
    with pytest.raises(ma.ValidationError) as error:
        schema.load(copy.deepcopy(INVALID[5]))
    assert schema in slow
    assert error.value.messages == {"customer": {"email": ["Not a valid email address."]}}
