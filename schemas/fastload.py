"""A faster `Schema.load` for valid input, for paths that load thousands of items (bulk triggers).

`compile_loader(schema)` returns a function that loads one item with the schema's own field objects (so every
field's conversion and validators are marshmallow's) but without the schema machinery around them (error
stores, hook lookups, copies), which costs most of a load's time for small items. It answers ``None`` as soon
as anything is not plainly valid (an unknown key, a field error, a failed schema validator, a type it does not
handle): the caller then loads the item with the schema itself, which gives the usual field errors. So for any
input the result is either ``None`` or exactly what ``schema.load(item)`` returns.

It handles what our input schemas use: scalar fields, `Nested` (one schema), `List` of a scalar or a `Nested`,
and schema-level `@validates_schema` validators. A schema with anything else (pre/post-load hooks, field
`@validates` methods, data keys, non-default `unknown`) is not compiled: its loader always answers ``None``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.utils import missing

Loader = Callable[[Any], Any]
_FAIL = object()  # a field or schema that is not plainly valid: the caller falls back to the schema


def compile_loader(schema: ma.Schema) -> Loader:
    """A function item → loaded dict, or None when the schema itself must load it (see the module's doc)."""
    load = _compile_schema(schema)
    if load is None:
        return lambda _item: None

    def loader(item: Any) -> Any:
        try:
            result = load(item)
        except ma.ValidationError:
            return None
        return None if result is _FAIL else result

    return loader


def _compile_schema(schema: ma.Schema) -> Callable[[Any], Any] | None:
    hooks = schema._hooks  # read only: a schema with hooks this loader does not run is refused
    if hooks[PRE_LOAD] or hooks[POST_LOAD] or hooks[VALIDATES] or schema.unknown != ma.RAISE:
        return None
    validators = []
    for attr_name, hook_many, kwargs in hooks[VALIDATES_SCHEMA]:
        if hook_many or kwargs.get("pass_original"):
            return None
        validators.append(getattr(schema, attr_name))
    plan: list[tuple[str, Callable[[Any], Any], bool, Any, bool]] = []
    for name, field in schema.load_fields.items():
        if field.data_key not in (None, name) or (field.attribute not in (None, name)):
            return None
        converter = _compile_field(field)
        if converter is None:
            return None
        plan.append((name, converter, field.required, field.load_default, field.allow_none))
    known = frozenset(name for name, *_ in plan)

    def load(data: Any) -> Any:
        if type(data) is not dict or not known.issuperset(data):
            return _FAIL
        out: dict[str, Any] = {}
        get = data.get
        for name, convert, required, default, allow_none in plan:
            value = get(name, missing)
            if value is missing:
                if required:
                    return _FAIL
                if default is not missing:
                    out[name] = default() if callable(default) else default
            elif value is None:  # what Field.deserialize answers for None, whatever the field
                if not allow_none:
                    return _FAIL
                out[name] = None
            else:
                value = convert(value)
                if value is _FAIL:
                    return _FAIL
                out[name] = value
        for check in validators:
            check(out, partial=None, many=False, unknown=ma.RAISE)
        return out

    return load


def _compile_field(field: fields.Field) -> Callable[[Any], Any] | None:
    """A function value (never None: the caller judges None) → loaded value, or _FAIL, or raises ValidationError."""
    if field.pre_load or field.post_load:
        return None
    if isinstance(field, fields.Nested):
        if field.many or not isinstance(field.schema, ma.Schema) or field.only or field.exclude:
            return None
        inner = _compile_schema(field.schema)
        if inner is None:
            return None
        return _validated(field, inner)
    if isinstance(field, fields.List):
        item = _compile_field(field.inner)
        if item is None:
            return None
        inner_allows_none = field.inner.allow_none

        def convert_list(value: Any) -> Any:
            if type(value) is not list:
                return _FAIL
            out: list[Any] = []
            for element in value:
                if element is None:
                    if not inner_allows_none:
                        return _FAIL
                    out.append(None)
                    continue
                converted = item(element)
                if converted is _FAIL:
                    return _FAIL
                out.append(converted)
            return out

        return _validated(field, convert_list)
    if isinstance(field, (fields.Dict, fields.Tuple, fields.Method, fields.Function, fields.Pluck)):
        return None
    if isinstance(field, fields.String) and type(field) in (fields.String, fields.Email, fields.Url):
        return _compile_string(field)
    return field.deserialize  # a scalar: marshmallow's own conversion and validators (raises ValidationError)


def _compile_string(field: fields.String) -> Callable[[Any], Any]:
    """String, Email and Url load a str as itself, then run their validators (marshmallow builds an ``And`` of them
    on every call); ``Length`` is checked inline. Anything but a str goes to marshmallow."""
    lengths = [v for v in field.validators if type(v) is validate.Length and v.equal is None]
    checks = tuple(v for v in field.validators if v not in lengths)
    low = max((v.min for v in lengths if v.min is not None), default=0)
    high = min((v.max for v in lengths if v.max is not None), default=sys.maxsize)
    deserialize = field.deserialize

    def convert(value: Any) -> Any:
        if type(value) is not str:
            return deserialize(value)
        if not low <= len(value) <= high:
            return _FAIL
        for check in checks:
            check(value)
        return value

    return convert


def _validated(field: fields.Field, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    checks = list(field.validators)
    if not checks:
        return convert

    def run(value: Any) -> Any:
        result = convert(value)
        if result is not _FAIL:
            for check in checks:
                check(result)
        return result

    return run
