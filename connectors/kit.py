"""The contract suite every connector passes, usable from one class in a connector's tests::

    from connectors.kit import ConnectorContract

    class TestWebhookContract(ConnectorContract):
        connector_class = WebhookConnector
        sample_settings = {"url": "https://hooks.example.com/x", "signing_secret": "whsec_..."}
        golden_name = "webhook"  # compare the redacted request with tests/golden/webhook.json

A connector that declares ``Capabilities.batch_size > 1`` is checked as a batch sender too: it
implements the batch contract, its batch request makes no network call, is deterministic, lists every
secret and matches ``<golden_name>_batch.json``, ``plan_batches`` keeps to its count and size limits,
and ``classify_batch`` gives one outcome per event, agreeing with the status table for whole-request
answers. Vendor quirks go in ``expected_classification`` (merged over the default table) with a comment saying
why. A connector whose output depends on the time takes a ``clock`` argument; the suite passes a fixed
one. Rewrite golden files with ``TIDINGS_UPDATE_GOLDEN=1``. Needs pytest and responses (the test extra).
"""

from __future__ import annotations

import dataclasses
import http
import inspect
import json
import logging
import os
import re
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import responses

from connectors import registry
from connectors.base import (
    Connector,
    ConnectorError,
    Customer,
    Event,
    Outcome,
    OutcomeKind,
    Request,
    SkipEvent,
    json_size,
    mask_settings,
    plan_batches,
)
from connectors.http import BlockedDestination, HttpClient, TransportError, redact

FIXED_NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
SAMPLE_EVENT = Event(
    id="act_0001_contract",
    name="Acme - Review Request",
    type="review_request",
    occurred_at=datetime(2026, 3, 14, 15, 0, 0, tzinfo=UTC),
    customer=Customer(
        email="ada@example.com", phone="+14155550100", first_name="Ada", last_name="Lovelace", external_id="cus_42"
    ),
    properties={"order_id": "1001", "review_url": "https://acme.example.com/r/1001", "items": [{"sku": "TEA-1"}]},
)
DEFAULT_CLASSIFICATION: dict[int | str, OutcomeKind] = {
    **dict.fromkeys((200, 202, 204), OutcomeKind.DELIVERED),
    **dict.fromkeys((400, 404, 422), OutcomeKind.PERMANENT),
    **dict.fromkeys((401, 403), OutcomeKind.CREDENTIALS),
    429: OutcomeKind.RATE_LIMITED,
    **dict.fromkeys((500, 502, 503), OutcomeKind.RETRY),
    "timeout": OutcomeKind.RETRY,
    "blocked": OutcomeKind.PERMANENT,
}
KEY = re.compile(r"[a-z][a-z0-9_]*")


def fake_response(status: int, headers: Mapping[str, str] | None = None, body: Any = None) -> requests.Response:
    """A platform's answer, as HttpClient.send returns it."""
    response = requests.Response()
    response.status_code = status
    response.reason = http.HTTPStatus(status).phrase
    response.headers.update(headers or {})
    response._content = b"" if body is None else json.dumps(body).encode()
    response.encoding = "utf-8"
    response.url = "https://platform.example.com/"
    return response


class ConnectorContract:
    """Subclass as ``Test<Name>Contract`` and set ``connector_class`` and ``sample_settings``."""

    __test__ = False  # the base is not a test class; every subclass is (see __init_subclass__)
    connector_class: ClassVar[type[Connector]]
    sample_settings: ClassVar[Mapping[str, Any]]  # credentials and settings, merged, as a user would enter them
    sample_event: ClassVar[Event] = SAMPLE_EVENT
    golden_name: ClassVar[str | None] = None
    golden_dir: ClassVar[Path | None] = None  # default: <rootdir>/tests/golden
    # Extra departures from the default table, for this test class only; a connector's own departures belong on the
    # connector (Connector.classification_quirks), where `hub connectors check` sees them too.
    expected_classification: ClassVar[Mapping[int | str, OutcomeKind]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    # Helpers a subclass may override.

    def make_connector(self) -> Connector:
        if "clock" in inspect.signature(self.connector_class).parameters:
            return self.connector_class(clock=lambda: FIXED_NOW)  # type: ignore[call-arg]
        return self.connector_class()

    def settings(self) -> dict[str, Any]:
        """The sample settings loaded through both schemas, merged, as the hub hands them to the connector."""
        cls = self.connector_class
        credential_names = set(cls.credentials_schema().fields)
        credentials = {k: v for k, v in self.sample_settings.items() if k in credential_names}
        rest = {k: v for k, v in self.sample_settings.items() if k not in credential_names}
        return {**cls.settings_schema().load(rest), **cls.credentials_schema().load(credentials)}

    def event(self, **changes: Any) -> Event:
        types = self.connector_class.capabilities.event_types
        if types and self.sample_event.type not in types:
            changes.setdefault("type", types[0])
        return dataclasses.replace(self.sample_event, **changes)

    def secret_values(self) -> list[str]:
        return [str(v) for v in self.make_connector().secrets(self.settings())]

    # The contract.

    def test_it_declares_a_stable_key_and_a_label(self) -> None:
        cls = self.connector_class
        assert isinstance(getattr(cls, "key", None), str) and KEY.fullmatch(cls.key), "key: lower_snake_case"
        assert isinstance(getattr(cls, "label", None), str) and cls.label.strip(), "label: a name for people"
        registered = registry.available().get(cls.key)
        assert registered in (None, cls), f"key {cls.key!r} is already taken by {registered}"

    def test_its_sample_settings_load_through_both_schemas(self) -> None:
        cls = self.connector_class
        known = set(cls.credentials_schema().fields) | set(cls.settings_schema().fields)
        assert set(self.sample_settings) <= known, (
            f"sample settings not in either schema: {set(self.sample_settings) - known}"
        )
        assert self.settings()

    def test_every_credentials_value_is_masked(self) -> None:
        connector = self.make_connector()
        masked = mask_settings(connector, self.settings())
        for name in connector.credentials_schema().fields:
            value = self.settings().get(name)
            if value:
                assert str(value) not in json.dumps(masked, default=str), f"credentials field {name!r} is not masked"

    def batch_events(self) -> list[Event]:
        """Two events for the batch checks: the sample and a second one with its own id."""
        return [self.event(), self.event(id=self.sample_event.id + "_2")]

    def build_batch(self, events: list[Event] | None = None) -> Request:
        connector, settings = self.make_connector(), self.settings()
        return connector.build_batch_request(
            [connector.batch_entry(e, settings) for e in events or self.batch_events()], settings
        )

    def test_build_request_makes_no_network_call_and_is_deterministic(self, monkeypatch: pytest.MonkeyPatch) -> None:
        first, second = _offline(
            monkeypatch,
            "build_request",
            lambda: self.make_connector().build_request(self.event(), self.settings()),
            lambda: self.make_connector().build_request(self.event(), self.settings()),
        )
        assert first == second, "build_request must depend only on the event, the settings and the clock"
        assert isinstance(first, Request) and first.method in {"GET", "POST", "PUT", "PATCH", "DELETE"}
        assert first.url.startswith(("https://", "http://"))
        assert set(self.secret_values()) <= set(first.secrets), "every credentials value must be in Request.secrets"

    # The batch contract (connectors declaring batch_size > 1).

    def skip_unless_batching(self) -> None:
        if self.connector_class.capabilities.batch_size <= 1:
            pytest.skip("the connector sends one event a request")

    def test_a_batch_size_above_one_comes_with_the_batch_contract(self) -> None:
        self.skip_unless_batching()
        cls = self.connector_class
        missing = [
            name for name in ("batch_entry", "build_batch_request") if getattr(cls, name) is getattr(Connector, name)
        ]
        assert not missing, f"batch_size > 1 needs the batch contract; not implemented: {missing}"

    def test_its_batch_request_makes_no_network_call_is_deterministic_and_keeps_secrets(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.skip_unless_batching()
        first, second = _offline(monkeypatch, "build_batch_request", self.build_batch, self.build_batch)
        assert first == second, "a batch request must depend only on the events, the settings and the clock"
        assert isinstance(first, Request) and first.url.startswith(("https://", "http://"))
        assert set(self.secret_values()) <= set(first.secrets), "every credentials value must be in Request.secrets"
        record = json.dumps(redact(first), ensure_ascii=False)
        leaks = [secret for secret in self.secret_values() if secret in record]
        assert not leaks, "a credentials value appears in the recorded batch request"

    def test_its_batch_request_matches_the_golden_file(self, pytestconfig: pytest.Config) -> None:
        self.skip_unless_batching()
        if not self.golden_name:
            pytest.skip("no golden_name set")
        path = (self.golden_dir or pytestconfig.rootpath / "tests" / "golden") / f"{self.golden_name}_batch.json"
        record = json.loads(json.dumps(redact(self.build_batch())))
        if os.environ.get("TIDINGS_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        assert path.exists(), f"{path} is missing: run the tests with TIDINGS_UPDATE_GOLDEN=1 to write it"
        assert record == json.loads(path.read_text(encoding="utf-8"))

    def test_batches_keep_to_the_declared_count_and_size(self) -> None:
        self.skip_unless_batching()
        connector, settings = self.make_connector(), self.settings()
        capabilities = connector.capabilities
        entry = connector.batch_entry(self.event(), settings)
        count = capabilities.batch_size + 1
        groups = plan_batches(connector, [entry] * count, settings)
        assert sorted(i for g in groups for i in g) == list(range(count)), "every entry goes out exactly once"
        assert all(len(g) <= capabilities.batch_size for g in groups), "a request holds more than batch_size events"
        limit = capabilities.batch_max_bytes
        if limit:
            padding = "x" * max(1, limit // 3)
            big = connector.batch_entry(
                self.event(properties={**self.sample_event.properties, "pad": padding}), settings
            )
            for group in plan_batches(connector, [big] * 4, settings):
                body = connector.build_batch_request([big] * len(group), settings).json
                assert len(group) == 1 or json_size(body) <= limit, "a request's body is over batch_max_bytes"

    def test_batch_answers_give_one_outcome_per_event(self) -> None:
        self.skip_unless_batching()
        connector = self.make_connector()
        wrong: dict[int | str, Any] = {}
        for case, expected in self.classification_table().items():
            outcomes = self._classify_batch(connector, case, 3)
            kinds = [o.kind for o in outcomes]
            if kinds != [expected] * 3:
                wrong[case] = kinds
        assert not wrong, f"batch answers classified differently from the table (3 events): {wrong}"

    def test_its_request_matches_the_golden_file(self, pytestconfig: pytest.Config) -> None:
        if not self.golden_name:
            pytest.skip("no golden_name set")
        path = (self.golden_dir or pytestconfig.rootpath / "tests" / "golden") / f"{self.golden_name}.json"
        record = json.loads(json.dumps(redact(self.make_connector().build_request(self.event(), self.settings()))))
        if os.environ.get("TIDINGS_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        assert path.exists(), f"{path} is missing: run the tests with TIDINGS_UPDATE_GOLDEN=1 to write it"
        assert record == json.loads(path.read_text(encoding="utf-8"))

    def classification_table(self) -> dict[int | str, OutcomeKind]:
        """The default table, with the connector's declared quirks and this class's own over it."""
        return {
            **DEFAULT_CLASSIFICATION,
            **self.connector_class.classification_quirks,
            **self.expected_classification,
        }

    def test_it_classifies_the_status_table(self) -> None:
        connector = self.make_connector()
        wrong: dict[int | str, tuple[str, str]] = {}
        for case, expected in self.classification_table().items():
            outcome = self._classify(connector, case)
            if outcome.kind != expected:
                wrong[case] = (outcome.kind.value, outcome.reason)
            elif outcome.kind == OutcomeKind.RATE_LIMITED and case == 429 and outcome.retry_after != 7:
                wrong[case] = ("retry_after", str(outcome.retry_after))
        assert not wrong, f"classified differently from the table: {wrong}"

    def test_secrets_never_appear_in_repr_records_errors_or_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        connector = self.make_connector()
        request = connector.build_request(self.event(), self.settings())
        connector.classify(fake_response(401, body={"error": {"message": "bad key"}}))
        error: ConnectorError | None = None
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            for method in (responses.GET, responses.POST, responses.PUT, responses.PATCH):
                mock.add(method, re.compile(".*"), status=401, json={"error": {"message": "invalid API key"}})
            http = HttpClient(allow_private=True)
            try:
                connector.verify(self.settings(), http)
            except ConnectorError as raised:
                error = raised
            finally:
                http.close()
        if type(connector).verify is not Connector.verify:
            assert error is not None and error.credentials, "verify must raise ConnectorError(credentials=True) on 401"
        shown = {
            "repr": repr(connector),
            "record": json.dumps(redact(request), ensure_ascii=False),
            "error": f"{error} {error.message}" if error else "",
            "logs": caplog.text + " ".join(r.getMessage() for r in caplog.records),
        }
        for secret in self.secret_values():
            leaks = [where for where, text in shown.items() if secret in text]
            assert not leaks, f"a credentials value appears in: {leaks}"

    def test_an_event_without_an_accepted_identity_is_skipped(self) -> None:
        identities = self.connector_class.capabilities.identities
        customer = dataclasses.replace(self.sample_event.customer, **dict.fromkeys(identities))
        with pytest.raises(SkipEvent) as skipped:
            self.make_connector().build_request(self.event(customer=customer), self.settings())
        assert skipped.value.code == "missing_identity"

    def test_an_unsupported_event_type_is_skipped(self) -> None:
        if self.connector_class.capabilities.event_types is None:
            pytest.skip("the connector takes every event type")
        with pytest.raises(SkipEvent) as skipped:
            self.make_connector().build_request(self.event(type="tidings_contract_unknown"), self.settings())
        assert skipped.value.code == "unsupported_event"

    @staticmethod
    def _classify_batch(connector: Connector, case: int | str, count: int) -> list[Outcome]:
        if case in ("timeout", "blocked"):
            error = (
                TransportError("timeout", "timed out talking to platform.example.com")
                if case == "timeout"
                else BlockedDestination("destination 10.0.0.7 is a private or reserved address")
            )
            return connector.classify_batch(None, error, count)
        assert isinstance(case, int)
        headers = {"Retry-After": "7"} if case in (429, 503) else {}
        return connector.classify_batch(
            fake_response(case, headers, {"error": {"message": f"contract test {case}"}}), None, count
        )

    @staticmethod
    def _classify(connector: Connector, case: int | str) -> Outcome:
        if case == "timeout":
            return connector.classify(None, TransportError("timeout", "timed out talking to platform.example.com"))
        if case == "blocked":
            return connector.classify(None, BlockedDestination("destination 10.0.0.7 is a private or reserved address"))
        assert isinstance(case, int)
        headers = {"Retry-After": "7"} if case in (429, 503) else {}
        return connector.classify(fake_response(case, headers, {"error": {"message": f"contract test {case}"}}))


def _offline(monkeypatch: pytest.MonkeyPatch, what: str, *calls: Any) -> list[Any]:
    """Run each call with sockets, name resolution and requests all refused; fail if any was tried."""
    touched: list[Any] = []

    def no_network(*args: Any, **kwargs: Any) -> None:
        touched.append(args)
        raise AssertionError(f"{what} must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        try:
            results = [call() for call in calls]
        except Exception as error:
            if touched or mock.calls:
                raise AssertionError(f"{what} must not touch the network") from error
            raise
    assert not touched and not mock.calls, f"{what} must not touch the network"
    return results
