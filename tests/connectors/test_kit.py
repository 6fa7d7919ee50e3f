"""The contract suite catches the mistakes it is there for: each broken connector fails one check."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import marshmallow as ma
import pytest
import requests

from connectors.base import (
    Capabilities,
    Connector,
    Event,
    Outcome,
    OutcomeKind,
    Request,
    SkipEvent,
    default_classify,
    splice_of,
)
from connectors.http import HttpClient
from connectors.kit import SAMPLE_EVENT, ConnectorContract
from tests.connectors.plugin_samples import ParrotConnector

KEY = "tok_live_0123456789abcdef"


class Credentials(ma.Schema):
    api_key = ma.fields.String(required=True)


class Careful(ParrotConnector):
    """A correct connector: the baseline each broken one below departs from once."""

    key = "careful"
    credentials_schema = Credentials

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        key = settings["api_key"]
        return Request("POST", "https://api.parrot.example/e", {"Authorization": f"Bearer {key}"}, secrets=(key,))


class Contract(ConnectorContract):
    __test__ = False  # run by hand below
    connector_class = Careful
    sample_settings: ClassVar[Mapping[str, Any]] = {"api_key": KEY}


def run(check: str, connector: type[Connector], request: pytest.FixtureRequest) -> None:
    """Run one contract check against a connector class, with real fixtures."""
    contract = type("Case", (Contract,), {"connector_class": connector, "__test__": False})()
    method = getattr(contract, check)
    method(**{name: request.getfixturevalue(name) for name in inspect.signature(method).parameters})


CHECKS = [
    "test_it_declares_a_stable_key_and_a_label",
    "test_its_sample_settings_load_through_both_schemas",
    "test_every_credentials_value_is_masked",
    "test_build_request_makes_no_network_call_and_is_deterministic",
    "test_it_classifies_the_status_table",
    "test_secrets_never_appear_in_repr_records_errors_or_logs",
    "test_an_event_without_an_accepted_identity_is_skipped",
]


@pytest.mark.parametrize("check", CHECKS)
def test_a_correct_connector_passes_every_check(check: str, request: pytest.FixtureRequest) -> None:
    run(check, Careful, request)


class Chatty(Careful):
    key = "chatty"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        logging.getLogger("chatty").debug("sending with %s", settings["api_key"])
        return super().build_request(event, settings)


class Leaky(Careful):
    key = "leaky"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.last_key = settings["api_key"]
        return super().build_request(event, settings)

    def __repr__(self) -> str:
        return f"<Leaky {self.__dict__}>"


class Forgetful(Careful):
    """Puts the key in the body and forgets to list it in secrets."""

    key = "forgetful"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        return Request("POST", "https://api.parrot.example/e", json={"key": settings["api_key"]})


class Phoning(Careful):
    key = "phoning"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        socket.getaddrinfo("api.parrot.example", 443)
        return super().build_request(event, settings)


class Fetching(Careful):
    key = "fetching"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        requests.get("https://api.parrot.example/token", timeout=1)
        return super().build_request(event, settings)


class Hasty(Careful):
    """Treats a 401 as permanent and a 429 as a plain retry."""

    key = "hasty"

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        if response is not None and response.status_code in (401, 429):
            return Outcome(OutcomeKind.PERMANENT)
        return default_classify(response, error)


class Indiscriminate(Careful):
    key = "indiscriminate"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        key = settings["api_key"]
        return Request("POST", "https://api.parrot.example/e", {"Authorization": f"Bearer {key}"}, secrets=(key,))


class Trusting(Careful):
    """verify() that ignores the answer."""

    key = "trusting"

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        http.send(Request("GET", "https://api.parrot.example/me", {"Authorization": f"Bearer {settings['api_key']}"}))


class Picky(Careful):
    key = "picky"
    capabilities = Capabilities(identities=("email",), event_types=("review_request",))


class Sloppy(Picky):
    key = "sloppy"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        if not event.customer.email:
            raise SkipEvent("missing_identity", "no email")
        return Request("POST", "https://api.parrot.example/e")


class Unnamed(Careful):
    key = "Not A Key"


class Impostor(Careful):
    key = "webhook"  # taken by a built-in


@pytest.mark.parametrize(
    ("connector", "check", "complaint"),
    [
        (Chatty, "test_secrets_never_appear_in_repr_records_errors_or_logs", "logs"),
        (Leaky, "test_secrets_never_appear_in_repr_records_errors_or_logs", "repr"),
        (Forgetful, "test_build_request_makes_no_network_call_and_is_deterministic", "Request.secrets"),
        (Phoning, "test_build_request_makes_no_network_call_and_is_deterministic", "network"),
        (Fetching, "test_build_request_makes_no_network_call_and_is_deterministic", "network"),
        (Hasty, "test_it_classifies_the_status_table", "401"),
        (Indiscriminate, "test_an_event_without_an_accepted_identity_is_skipped", "DID NOT RAISE"),
        (Trusting, "test_secrets_never_appear_in_repr_records_errors_or_logs", "credentials=True"),
        (Sloppy, "test_an_unsupported_event_type_is_skipped", "DID NOT RAISE"),
        (Unnamed, "test_it_declares_a_stable_key_and_a_label", "lower_snake_case"),
        (Impostor, "test_it_declares_a_stable_key_and_a_label", "already taken"),
    ],
)
def test_a_broken_connector_fails_the_check_for_its_mistake(
    connector: type[Connector], check: str, complaint: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises((AssertionError, pytest.fail.Exception)) as caught:
        run(check, connector, request)
    assert complaint in str(caught.value)


def test_a_connector_limited_to_some_event_types_skips_the_others(request: pytest.FixtureRequest) -> None:
    run("test_an_unsupported_event_type_is_skipped", Picky, request)
    assert Picky().build_request(SAMPLE_EVENT, {"api_key": KEY}).method == "POST"


class Quirky(Careful):
    key = "quirky"

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        # A vendor that answers 404 for a deactivated account: the user must reconnect, not drop the event.
        if response is not None and response.status_code == 404:
            return Outcome(OutcomeKind.CREDENTIALS)
        return default_classify(response, error)


class QuirkyUndeclared(Contract):
    __test__ = False
    connector_class = Quirky


class QuirkyDeclared(QuirkyUndeclared):
    __test__ = False
    expected_classification: ClassVar[Mapping[int | str, OutcomeKind]] = {404: OutcomeKind.CREDENTIALS}


def test_vendor_quirks_are_declared_over_the_default_table() -> None:
    with pytest.raises(AssertionError, match="404"):
        QuirkyUndeclared().test_it_classifies_the_status_table()
    QuirkyDeclared().test_it_classifies_the_status_table()


def test_subclasses_are_collected_and_the_base_is_not() -> None:
    class TestSomething(ConnectorContract):
        connector_class = Careful

    assert ConnectorContract.__test__ is False and TestSomething.__test__ is True
    assert Contract.__test__ is False  # an explicit opt-out is kept


class Bulky(Careful):
    """A correct batch sender: one request for many events."""

    key = "bulky"
    capabilities = Capabilities(batch_size=3, batch_max_bytes=2_000)

    def batch_entry(self, event: Event, settings: Mapping[str, Any]) -> Any:
        self.check_event(event)
        return {"id": event.id, "properties": dict(event.properties)}

    def build_batch_request(self, entries: Sequence[Any], settings: Mapping[str, Any]) -> Request:
        key = settings["api_key"]
        return Request(
            "POST",
            "https://api.parrot.example/bulk",
            {"Authorization": f"Bearer {key}"},
            json={"events": list(entries)},
            secrets=(key,),
        )


class HalfBulky(Careful):
    """Declares a batch size and implements nothing of the batch contract."""

    key = "half_bulky"
    capabilities = Capabilities(batch_size=100)


class Miscounting(Bulky):
    key = "miscounting"

    def classify_batch(self, response: requests.Response | None, error: Exception | None, count: int) -> list[Outcome]:
        return [self.classify(response, error)]


class BulkyLeaky(Bulky):
    """Puts the key in each entry and lists no secret."""

    key = "bulky_leaky"

    def build_batch_request(self, entries: Sequence[Any], settings: Mapping[str, Any]) -> Request:
        return Request("POST", "https://api.parrot.example/bulk", json={"key": settings["api_key"], "events": entries})


BATCH_CHECKS = [
    "test_a_batch_size_above_one_comes_with_the_batch_contract",
    "test_its_batch_request_makes_no_network_call_is_deterministic_and_keeps_secrets",
    "test_batches_keep_to_the_declared_count_and_size",
    "test_batch_answers_give_one_outcome_per_event",
]


@pytest.mark.parametrize("check", BATCH_CHECKS)
def test_a_correct_batch_sender_passes_every_batch_check(check: str, request: pytest.FixtureRequest) -> None:
    run(check, Bulky, request)


@pytest.mark.parametrize("check", BATCH_CHECKS)
def test_the_batch_checks_skip_a_connector_that_sends_one_event_a_request(
    check: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(pytest.skip.Exception):
        run(check, Careful, request)


@pytest.mark.parametrize(
    ("connector", "check", "complaint"),
    [
        (HalfBulky, "test_a_batch_size_above_one_comes_with_the_batch_contract", "batch_entry"),
        (Miscounting, "test_batch_answers_give_one_outcome_per_event", "3 events"),
        (BulkyLeaky, "test_its_batch_request_makes_no_network_call_is_deterministic_and_keeps_secrets", "secrets"),
    ],
)
def test_a_broken_batch_sender_fails_the_check_for_its_mistake(
    connector: type[Connector], check: str, complaint: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(AssertionError) as caught:
        run(check, connector, request)
    assert complaint in str(caught.value)


class Wrapping(Bulky):
    """Wraps each entry: its body is not the entries as they are."""

    key = "wrapping"

    def build_batch_request(self, entries: Sequence[Any], settings: Mapping[str, Any]) -> Request:
        return super().build_batch_request([{"event": e} for e in entries], settings)


class Counting(Bulky):
    """Puts the number of entries in the body."""

    key = "counting"

    def build_batch_request(self, entries: Sequence[Any], settings: Mapping[str, Any]) -> Request:
        request = super().build_batch_request(entries, settings)
        return dataclasses.replace(request, json={**request.json, "count": len(entries)})


def test_a_body_of_entries_as_they_are_is_spliced_from_texts_encoded_once() -> None:
    settings = {"api_key": KEY}
    entries = [{"id": "a", "properties": {"x": "é"}}, {"id": "b", "properties": {}}]
    splice = splice_of(Bulky(), settings)
    assert splice is not None
    built = splice.build([json.dumps(e) for e in entries])
    expected = Bulky().build_batch_request(entries, settings)
    assert built.data == json.dumps(expected.json).encode()
    assert (built.method, built.url, built.secrets) == (expected.method, expected.url, expected.secrets)
    assert built.headers == {**expected.headers, "Content-Type": "application/json"}  # as requests sets for json=


@pytest.mark.parametrize("connector", [Wrapping, Counting, Careful])
def test_a_body_that_is_not_the_entries_as_they_are_is_built_by_the_connector(connector: type[Connector]) -> None:
    assert splice_of(connector(), {"api_key": KEY}) is None


def test_the_hub_sends_in_batches_only_for_a_connector_with_the_whole_batch_contract() -> None:
    assert Bulky().batches
    assert not HalfBulky().batches and not Careful().batches
