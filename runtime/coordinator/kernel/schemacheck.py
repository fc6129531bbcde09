"""A fast yes for documents that match a table's JSON schema, compiled once per table.

The coordinator checks every write against the schema its mount's manifest
declares (a compromised worker must not store what its own pydantic model
forbids).  ``jsonschema`` does that in 17 us to several hundred per document,
most of it walking keyword dispatch tables.  :func:`compile_schema` turns the
subset of Draft 2020-12 that pydantic emits into nested closures once; the
predicate it returns is *sound*: True only for a document the jsonschema
validator accepts too.  False means "not shown valid": the caller then runs
jsonschema, which decides and words the error.  A schema using a keyword this
module does not know compiles to None, and every write of that table goes to
jsonschema alone.

Soundness over completeness: types are compared by exact ``type()`` (values
decoded from msgpack have no subclasses), ``enum``/``const`` match only values
of the same scalar type, and ``oneOf``/``not`` (which need an exact "no") are
not compiled at all.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment", "format",
    "contentEncoding", "contentMediaType", "$defs",
})
"""Keywords that never make a document invalid for a Draft 2020-12 validator without a format checker."""


_OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties", "minProperties", "maxProperties"})
_ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "minItems", "maxItems"})
_STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern"})
_NUMBER_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
"""The keywords each kind of check handles (a schema with others stays with jsonschema alone)."""


class _Unsupported(Exception):
    pass


def compile_schema(schema: Any) -> Check | None:
    """A predicate True only for documents ``jsonschema.Draft202012Validator(schema)`` accepts; None if unsure."""
    try:
        return _Compiler(schema).compile(schema)
    except (_Unsupported, RecursionError, TypeError, re.error):
        return None


def _true(value: Any) -> bool:
    return True


def _false(value: Any) -> bool:
    return False


def _is_int(value: Any) -> bool:
    t = type(value)
    return t is int or (t is float and value.is_integer())


_TYPES: dict[str, Check] = {
    "string": lambda v: type(v) is str,
    "integer": _is_int,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict,
}


def _all(checks: list[Check]) -> Check:
    checks = [c for c in checks if c is not _true]
    if not checks:
        return _true
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    frozen = tuple(checks)
    return lambda v: all(check(v) for check in frozen)


def _any(checks: list[Check]) -> Check:
    if _true in checks:
        return _true
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        if second is _TYPES["null"]:  # ``X | None``, pydantic's commonest anyOf
            return lambda v: v is None or first(v)
        return lambda v: first(v) or second(v)
    frozen = tuple(checks)
    return lambda v: any(check(v) for check in frozen)


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, list[Check]] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return _true
        if schema is False:
            return _false
        if not isinstance(schema, dict):
            raise _Unsupported(schema)
        checks: list[Check] = []
        handled = _ANNOTATIONS | {"type"}
        if "type" in schema:
            checks.append(self._type(schema["type"]))
        for keywords, build in ((_OBJECT_KEYWORDS, self._object), (_ARRAY_KEYWORDS, self._array),
                                (_STRING_KEYWORDS, self._string), (_NUMBER_KEYWORDS, self._number)):
            if keywords & schema.keys():
                checks.append(build(schema))
                handled |= keywords
        if "enum" in schema or "const" in schema:
            checks.append(self._enum(schema["enum"] if "enum" in schema else [schema["const"]]))
            handled |= {"enum", "const"}
        if "anyOf" in schema:
            checks.append(_any([self.compile(s) for s in schema["anyOf"]]))
            handled |= {"anyOf"}
        if "allOf" in schema:
            checks.extend(self.compile(s) for s in schema["allOf"])
            handled |= {"allOf"}
        if "$ref" in schema:
            checks.append(self._ref(schema["$ref"]))
            handled |= {"$ref"}
        unknown = schema.keys() - handled
        if unknown:
            raise _Unsupported(sorted(unknown))
        return _all(checks)

    def _type(self, names: Any) -> Check:
        if isinstance(names, str):
            names = [names]
        try:
            checks = [_TYPES[n] for n in names]
        except (KeyError, TypeError):
            raise _Unsupported(names) from None
        return _any(checks)

    def _object(self, schema: dict[str, Any]) -> Check:
        props = {k: self.compile(s) for k, s in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        extra_schema = schema.get("additionalProperties", True)
        extra: Check | None = self.compile(extra_schema)
        if extra is _true:
            extra = None
        low, high = schema.get("minProperties", 0), schema.get("maxProperties")
        if not all(isinstance(k, str) for k in required) or not isinstance(low, int):
            raise _Unsupported(schema)
        if extra is None:  # a declared property that takes anything needs no look (with extra, it shields from extra)
            props = {k: c for k, c in props.items() if c is not _true}
            if not props and not required and not low and high is None:
                return _true

        def check(value: Any) -> bool:
            if type(value) is not dict:
                return not isinstance(value, dict)  # the keywords apply to objects only (a subclass: ask jsonschema)
            for key in required:
                if key not in value:
                    return False
            if len(value) < low or (high is not None and len(value) > high):
                return False
            for key, item in value.items():
                sub = props.get(key)
                if sub is None:
                    sub = extra
                    if sub is None:
                        continue
                if not sub(item):
                    return False
            return True
        return check

    def _array(self, schema: dict[str, Any]) -> Check:
        prefix = tuple(self.compile(s) for s in schema.get("prefixItems", ()))
        items_schema = schema.get("items", True)
        if isinstance(items_schema, list):
            raise _Unsupported("items as a list is not Draft 2020-12")
        rest: Check | None = self.compile(items_schema)
        if rest is _true:
            rest = None
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        n = len(prefix)
        if not n and rest is None and not low and high is None:
            return _true

        def check(value: Any) -> bool:
            if type(value) is not list:
                return not isinstance(value, list)
            if len(value) < low or (high is not None and len(value) > high):
                return False
            for sub, item in zip(prefix, value, strict=False):  # an array may be shorter
                if not sub(item):
                    return False
            if rest is not None:
                for item in value[n:] if n else value:
                    if not rest(item):
                        return False
            return True
        return check

    def _string(self, schema: dict[str, Any]) -> Check:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

        def check(value: Any) -> bool:
            if type(value) is not str:
                return not isinstance(value, str)
            if len(value) < low or (high is not None and len(value) > high):
                return False
            return pattern is None or pattern.search(value) is not None
        return check

    def _number(self, schema: dict[str, Any]) -> Check:
        ops = (("minimum", operator.ge), ("maximum", operator.le), ("exclusiveMinimum", operator.gt),
               ("exclusiveMaximum", operator.lt))
        active = tuple((schema[k], op) for k, op in ops if k in schema)
        if not all(type(b) in (int, float) for b, _ in active):
            raise _Unsupported(schema)

        def check(value: Any) -> bool:
            t = type(value)
            if t is bool:
                return True  # not a number to jsonschema: the bounds do not apply
            if t is not int and t is not float:
                return not isinstance(value, (int, float))
            return all(op(value, bound) for bound, op in active)
        return check

    def _enum(self, options: Any) -> Check:
        if not isinstance(options, list) or not all(type(o) in (str, int, float, bool, type(None)) for o in options):
            raise _Unsupported(options)
        allowed = tuple((type(o), o) for o in options)
        return lambda v: any(type(v) is t and v == o for t, o in allowed)

    def _ref(self, ref: Any) -> Check:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/") or "/" in ref[len("#/$defs/"):]:
            raise _Unsupported(ref)
        cell = self.refs.get(ref)
        if cell is None:
            cell = self.refs[ref] = []
            target = self.root.get("$defs", {}).get(ref[len("#/$defs/"):]) if isinstance(self.root, dict) else None
            if target is None:
                raise _Unsupported(ref)
            cell.append(self.compile(target))  # a recursive model refers back to itself through the cell
        return lambda v: cell[0](v)
