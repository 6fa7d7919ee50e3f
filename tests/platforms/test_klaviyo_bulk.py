"""Klaviyo Bulk Create Events: the body the official SDK's model takes, Klaviyo's limits, per-event answers.

The golden bulk body is tests/golden/klaviyo_batch.json, checked by the contract suite (test_klaviyo.py).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import responses
from openapi_client.models import EventsBulkCreateJob

from connectors.base import OutcomeKind, json_size, plan_batches
from connectors.http import HttpClient
from connectors.klaviyo import BULK_BYTES, BULK_EVENTS, REVISION, KlaviyoConnector
from tests.platforms.conftest import REVIEW_REQUEST, REVIEW_SUBMITTED, answer

KEY = "pk_0123456789abcdef0123456789abcdef01"
SETTINGS = {"api_key": KEY, "base_url": "https://a.klaviyo.com"}
BULK_URL = "https://a.klaviyo.com/api/event-bulk-create-jobs"
CONNECTOR = KlaviyoConnector()


def entries(*events: Any) -> list[Any]:
    return [CONNECTOR.batch_entry(e, SETTINGS) for e in events]


def bulk(*events: Any, **settings: Any) -> Any:
    merged = {**SETTINGS, **settings}
    return CONNECTOR.build_batch_request([CONNECTOR.batch_entry(e, merged) for e in events], merged)


def pointer_error(index: int, detail: str, tail: str = "/attributes/profile/data/attributes/email") -> dict[str, Any]:
    return {
        "id": f"e{index}",
        "status": 400,
        "code": "invalid",
        "title": "Invalid input.",
        "detail": detail,
        "source": {"pointer": f"/data/attributes/events-bulk-create/data/{index}{tail}"},
    }


def test_a_bulk_body_is_valid_for_the_official_sdk_model_with_no_field_it_would_drop() -> None:
    body = bulk(REVIEW_REQUEST, REVIEW_SUBMITTED).json
    dumped = EventsBulkCreateJob.from_dict(body).model_dump(mode="json", by_alias=True, exclude_none=True)
    for item in dumped["data"]["attributes"]["events-bulk-create"]["data"]:
        assert item["attributes"].pop("backfill") is False  # flows do trigger
        for event in item["attributes"]["events"]["data"]:
            assert event["attributes"].pop("backfill") is False
    assert dumped == body


def test_the_bulk_request_goes_to_the_bulk_endpoint_with_the_pinned_revision_and_the_key_as_secret() -> None:
    request = bulk(REVIEW_REQUEST)
    assert request.method == "POST" and request.url == BULK_URL
    assert request.headers["revision"] == REVISION
    assert request.headers["Authorization"] == f"Klaviyo-API-Key {KEY}"
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert request.secrets == (KEY,)


def test_each_event_is_one_entry_with_its_own_profile_and_the_action_id_as_unique_id() -> None:
    items = bulk(REVIEW_REQUEST, REVIEW_SUBMITTED).json["data"]["attributes"]["events-bulk-create"]["data"]
    assert [i["type"] for i in items] == ["event-bulk-create", "event-bulk-create"]
    assert [i["attributes"]["events"]["data"][0]["attributes"]["unique_id"] for i in items] == [
        REVIEW_REQUEST.id,
        REVIEW_SUBMITTED.id,
    ]
    assert items[0]["attributes"]["profile"]["data"]["attributes"]["email"] == "ada@example.com"


def test_an_entry_carries_the_same_event_as_create_event_would() -> None:
    single = CONNECTOR.build_request(REVIEW_REQUEST, SETTINGS).json["data"]["attributes"]
    [entry] = entries(REVIEW_REQUEST)
    event = entry["attributes"]["events"]["data"][0]["attributes"]
    assert {**event, "profile": entry["attributes"]["profile"]} == single


def test_a_base_url_override_points_the_bulk_endpoint_at_that_server() -> None:
    assert bulk(REVIEW_REQUEST, base_url="http://127.0.0.1:8080/").url == (
        "http://127.0.0.1:8080/api/event-bulk-create-jobs"
    )


def test_requests_are_split_at_a_thousand_events() -> None:
    [entry] = entries(REVIEW_REQUEST)
    groups = plan_batches(CONNECTOR, [entry] * (BULK_EVENTS * 2 + 1), SETTINGS)
    assert [len(g) for g in groups] == [BULK_EVENTS, BULK_EVENTS, 1]


def test_requests_are_split_to_stay_under_five_megabytes_of_body() -> None:
    heavy = dataclasses.replace(REVIEW_REQUEST, properties={**REVIEW_REQUEST.properties, "notes": "x" * 90_000})
    [entry] = entries(heavy)
    groups = plan_batches(CONNECTOR, [entry] * 120, SETTINGS)
    assert len(groups) > 1 and sum(len(g) for g in groups) == 120
    for group in groups:
        body = CONNECTOR.build_batch_request([entry] * len(group), SETTINGS).json
        assert json_size(body) <= BULK_BYTES
    # Full requests, not needlessly small ones: one more entry would not have fitted.
    first = CONNECTOR.build_batch_request([entry] * (len(groups[0]) + 1), SETTINGS).json
    assert json_size(first) > BULK_BYTES


def test_the_planned_size_is_the_size_requests_sends() -> None:
    request = bulk(REVIEW_REQUEST, REVIEW_SUBMITTED)
    with responses.RequestsMock() as mock:
        posted = mock.post(BULK_URL, status=202)
        HttpClient().send(request)
    assert len(posted.calls[0].request.body) == json_size(request.json)


@responses.activate
def test_a_bulk_request_sent_through_the_http_client_is_delivered_for_every_event_on_202() -> None:
    request = bulk(REVIEW_REQUEST, REVIEW_SUBMITTED)
    posted = responses.post(BULK_URL, status=202, match=[responses.matchers.json_params_matcher(request.json)])
    response = HttpClient().send(request)
    assert [o.kind for o in CONNECTOR.classify_batch(response, None, 2)] == [OutcomeKind.DELIVERED] * 2
    assert posted.calls[0].request.headers["Content-Type"] == "application/vnd.api+json"


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (429, {"Retry-After": "12"}, OutcomeKind.RATE_LIMITED, 12),
        (503, {}, OutcomeKind.RETRY, None),
        (401, {}, OutcomeKind.CREDENTIALS, None),
        (500, {}, OutcomeKind.PERMANENT, None),  # final for the official SDK, as for Create Event
    ],
)
def test_a_whole_request_answer_applies_to_every_event(
    status: int, headers: dict[str, str], kind: str, retry_after: float | None
) -> None:
    body = {"errors": [{"id": "x", "code": "error", "title": "Error", "detail": "no"}]}
    outcomes = CONNECTOR.classify_batch(answer(status, body, headers), None, 3)
    assert [(o.kind, o.retry_after) for o in outcomes] == [(kind, retry_after)] * 3


def test_a_400_pointing_at_one_entry_fails_that_event_and_retries_the_others() -> None:
    body = {"errors": [pointer_error(1, "Invalid email address")]}
    outcomes = CONNECTOR.classify_batch(answer(400, body), None, 3)
    assert [o.kind for o in outcomes] == [OutcomeKind.RETRY, OutcomeKind.PERMANENT, OutcomeKind.RETRY]
    assert outcomes[1].reason == "HTTP 400: invalid: Invalid email address"
    assert "refused 1 other event(s) of the same bulk request" in outcomes[0].reason


def test_errors_pointing_at_several_entries_fail_each_with_its_own_detail() -> None:
    body = {"errors": [pointer_error(0, "Invalid email address"), pointer_error(2, "'time' is too old", "/x")]}
    outcomes = CONNECTOR.classify_batch(answer(400, body), None, 3)
    assert [o.kind for o in outcomes] == [OutcomeKind.PERMANENT, OutcomeKind.RETRY, OutcomeKind.PERMANENT]
    assert "'time' is too old" in outcomes[2].reason


@pytest.mark.parametrize(
    "pointer",
    ["/data", "/data/attributes/events-bulk-create", "/data/attributes/events-bulk-create/data/7", "/data/2"],
    ids=["whole body", "the list", "an entry beyond the request", "another path"],
)
def test_a_400_that_names_no_entry_of_the_request_fails_every_event(pointer: str) -> None:
    body = {"errors": [{"id": "x", "code": "invalid", "title": "Invalid input.", "detail": "bad", "source": {}}]}
    body["errors"][0]["source"] = {"pointer": pointer}
    outcomes = CONNECTOR.classify_batch(answer(400, body), None, 3)
    assert [o.kind for o in outcomes] == [OutcomeKind.PERMANENT] * 3
    assert outcomes[0].reason == "HTTP 400: invalid: bad"


def test_an_error_body_that_is_not_json_api_fails_every_event_with_its_text() -> None:
    outcomes = CONNECTOR.classify_batch(answer(400, "<html>nope</html>"), None, 2)
    assert [o.reason for o in outcomes] == ["HTTP 400: <html>nope</html>"] * 2


def test_a_bulk_body_stays_plain_json_for_the_attempt_record() -> None:
    # What the hub records for one event of a batch is the bulk request carrying that event alone.
    [entry] = entries(REVIEW_REQUEST)
    alone = CONNECTOR.build_batch_request([entry], SETTINGS)
    assert json.loads(json.dumps(alone.json))["data"]["attributes"]["events-bulk-create"]["data"] == [entry]
