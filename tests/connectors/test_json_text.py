"""connectors.base.json_text: the text of a bulk entry, written by orjson where that escapes strings as json.dumps."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from connectors.base import Request, json_text
from connectors.http import Recorder, redact

TRICKY = [
    "plain",
    'a "quote"',
    "back\\slash",
    "tab\there",
    "new\nline",
    "\x00\x01\x1f",
    "del\x7f",
    "é",
    "日本",
    "😀",
    "\u2028",
]


class Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize("text", TRICKY)
def test_strings_are_escaped_exactly_as_json_dumps_escapes_them(text: str) -> None:
    assert json_text(text) == json.dumps(text)
    assert json_text({"k": [text]}).replace(" ", "") == json.dumps({"k": [text]}).replace(" ", "")


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True, False, {"c": "d"}], "e": -7},
        {"big": 2**70, "small": -(2**70)},  # orjson would write a float, or refuse
        {"enum": Colour.RED},  # a str subclass: json.dumps writes its value
        [0.1, 1e16, -0.0, 123456789.123],
    ],
)
def test_the_value_reads_back_as_json_dumps_wrote_it(value: Any) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


def test_what_json_dumps_refuses_is_refused_too() -> None:
    with pytest.raises(TypeError):
        json_text({"when": object()})


def test_a_secret_in_an_entry_is_redacted_in_the_record_whatever_its_characters() -> None:
    for secret in ('pk_"é\\x', "pk_é日本", "pk_\x7f\x01"):
        request = Request("POST", "https://example.com/bulk", {"Authorization": secret}, secrets=(secret,))
        record = Recorder(request).text('{"data": [' + json_text({"leak": secret}) + "]}", {"batch": {"events": 1}})
        assert secret not in record and json.dumps(secret)[1:-1] not in record
        assert json.loads(record)["body"] == {"data": [{"leak": "[redacted]"}]}
        assert json.loads(record)["headers"] == redact(request)["headers"]
