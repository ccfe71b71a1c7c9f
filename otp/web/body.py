"""Reading a JSON request body strictly: size, time, content type, syntax, unknown fields and types
are each a 4xx naming what is wrong, never a 500.

The JSON parser is bounded too: an integer literal longer than ``MAX_INT_DIGITS`` (Python's
``int()`` refuses 4,300 digits with a ValueError, and converting long ones costs quadratic
time), ``NaN``/``Infinity`` (not JSON) and a key given twice in one object (which one counts
would be a guess) are each refused naming where they sit, e.g. ``extra.items[2].n``.

So is a lone surrogate in a key or string: JSON can spell one (``"\ud800"``, and Python's json
takes its UTF-8 bytes ED A0 80 too), Python strings hold it, but UTF-8 can't, so it would fail
wherever the string went next (a Redis key, the JSON of an answer) as a 500. The place is named
escaped (``Tags.\ud800``), and ``utf8_safe`` escapes any text an error answer carries.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from otp.core.validators import digits
from otp.errors import InvalidInput, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

M = TypeVar("M", bound=msgspec.Struct)

MAX_BODY = 16 * 1024
MAX_INT_DIGITS = 100
# Seconds a client has to send the whole body once the app starts reading it (OTP_BODY_TIMEOUT);
# the connection-level deadlines are in otp/serving.py.
BODY_TIMEOUT = 10.0


# A lone surrogate (a pair, once decoded, is one character above U+FFFF and matches nothing here).
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_utf8(text: str) -> bool:
    """Whether UTF-8 can carry ``text`` (it holds no lone surrogate)."""
    return _SURROGATE.search(text) is None


def utf8_safe(text: str) -> str:
    """``text`` with each lone surrogate escaped (``\\ud800``), so it always encodes as UTF-8."""
    return text if is_utf8(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_message(text: str, what: str) -> str:
    found = _SURROGATE.search(text)
    shown = utf8_safe(found.group()) if found else "?"
    return f"is not valid JSON ({what} a lone surrogate, {shown}, which is not a Unicode character)"


@dataclass(frozen=True)
class Field:
    kind: type
    required: bool = False
    max_length: int = 256  # of a string, or of each string of a list
    max_items: int = 0  # of a list (of strings, the one list kind the models have)


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        length = digits(declared)
        if length is None:
            raise InvalidInput("must be a number of bytes", field="Content-Length")
        if length > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes", field="body")
    # A client trickling its body (one byte a second) would otherwise hold this request open for
    # as long as it likes: the whole body arrives within the deadline or the answer is a 408.
    timeout = _body_timeout(request)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body is larger than {limit} bytes", field="body")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the request body was not received within {timeout:g}s", field="body") from None
    return b"".join(chunks)


def _body_timeout(request: Request) -> float:
    settings = getattr(request.app.state, "settings", None)
    return float(getattr(settings, "body_timeout", BODY_TIMEOUT))


async def read_model(request: Request, model: type[M], *, optional_body: bool = False) -> M:
    """The JSON body as ``model`` (otp/web/models.py): parsed by ``loads_strict``, then checked by
    msgspec in C. When msgspec refuses, the field-by-field check below words the 400 (the first
    wrong field in the model's order: unknown, missing, wrong type or too long); what it lets
    through (an enum or pattern the handler words itself, a number out of msgspec's range) is
    the handler's to refuse."""
    raw = await read_limited(request)
    if optional_body and not raw.strip():
        return model()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("send Content-Type: application/json", field="Content-Type")
    data = loads_strict(raw)
    if not isinstance(data, dict):
        raise InvalidInput("must be a JSON object", field="body")
    return parse_model(data, model)


def check_query(names: Iterable[str], model: type[msgspec.Struct]) -> None:
    """Refuse a query parameter ``model`` lacks: a misspelt filter would otherwise be ignored and
    the answer would be for everything."""
    known = fields_of(model)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise InvalidInput(f"is not a parameter of this endpoint; known: {', '.join(sorted(known))}", field=unknown[0])


def parse_model(data: dict[str, Any], model: type[M]) -> M:
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError:
        return model(**validate(data, fields_of(model)))


@functools.cache
def fields_of(model: type[msgspec.Struct]) -> dict[str, Field]:
    """The field specs ``validate`` checks, read from the model (its one source)."""
    info = msgspec.inspect.type_info(model)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{model!r} is not a Struct")
    return {f.name: _field(f.type, required=f.required) for f in info.fields}


def _field(kind: msgspec.inspect.Type, *, required: bool) -> Field:
    if isinstance(kind, msgspec.inspect.UnionType):
        (kind,) = (t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    if isinstance(kind, msgspec.inspect.StrType):
        return Field(str, required, kind.max_length or Field.max_length)
    if isinstance(kind, msgspec.inspect.ListType):
        item = kind.item_type.type if isinstance(kind.item_type, msgspec.inspect.Metadata) else kind.item_type
        if not isinstance(item, msgspec.inspect.StrType):
            raise TypeError(f"only lists of strings are checked field by field, not {item!r}")
        return Field(list, required, item.max_length or Field.max_length, kind.max_length or 100)
    # An object's entries are the handler's to check (what they name and hold).
    python = {msgspec.inspect.IntType: int, msgspec.inspect.BoolType: bool, msgspec.inspect.DictType: dict}[type(kind)]
    return Field(python, required)


def loads_strict(raw: bytes | str, field: str = "body") -> Any:
    """``json.loads`` with the bounds above; every refusal is InvalidInput naming its place under
    ``field`` (``body`` → ``to``, ``body[0]``; another field name → ``Tags.a``)."""
    try:
        if isinstance(raw, bytes):
            # UTF-8 only (RFC 8259 §8.1): json.loads would guess UTF-16 or UTF-32 from the bytes
            # and skip a BOM, reading a body that a UTF-8 proxy or WAF in front sees as garbage.
            # surrogatepass: an encoded lone surrogate is refused below, naming where it sits.
            raw = raw.decode("utf-8", "surrogatepass")
        data = json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant, object_pairs_hook=_checked_object)
        refused = _refused_in(data)
    except RecursionError:
        raise InvalidInput("is nested too deeply", field=field, code="malformed_json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InvalidInput(f"is not valid JSON ({reason})", field=field, code="malformed_json") from None
    if refused is not None:
        # Under the body a key names itself ("to"); anything else hangs off the field ("body[0]").
        alone = field == "body" and refused.path and not refused.path.startswith("[")
        place = refused.path if alone else _join(field, refused.path)
        raise InvalidInput(refused.message, field=place, code=refused.code)
    return data


@dataclass(frozen=True)
class _Refused:
    """Stands in, while json.loads runs, for a value refused: each enclosing object or array adds
    its key or index to ``path``, so the error can name exactly where it sits. (Raising from a
    hook would lose the path: the hook of an inner object doesn't know its parents.)"""

    path: str
    message: str
    code: str = "invalid_parameter"

    def under(self, key: str) -> _Refused:
        return _Refused(_join(key, self.path), self.message, self.code)


def _join(parent: str, path: str) -> str:
    return parent if not path else f"{parent}{path}" if path.startswith("[") else f"{parent}.{path}"


def _parse_int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _Refused("", f"is a number longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _parse_constant(name: str) -> _Refused:
    return _Refused("", f"is {name}, which is not a JSON number", "malformed_json")


def _checked_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Refused:
    seen: set[str] = set()
    for key, value in pairs:
        if not is_utf8(key):
            # Named escaped, and refused before "given more than once" (which would name it raw).
            return _Refused(utf8_safe(key), _surrogate_message(key, "the key holds"), "malformed_json")
        if key in seen:
            return _Refused(key, "is given more than once in the same object")
        seen.add(key)
        refused = _refused_in(value)
        if refused is not None:
            return refused.under(key)
    return dict(pairs)


def _refused_in(value: Any) -> _Refused | None:
    """The first refusal in ``value``. Objects were checked by their own hook (an object holding a
    refusal became one), so only arrays are looked into: each array is scanned once, by the hook
    of its nearest enclosing object."""
    if isinstance(value, _Refused):
        return value
    if isinstance(value, str) and not is_utf8(value):
        return _Refused("", _surrogate_message(value, "the string holds"), "malformed_json")
    if isinstance(value, list):
        for index, item in enumerate(value):
            refused = _refused_in(item)
            if refused is not None:
                return refused.under(f"[{index}]")
    return None


def validate(data: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    for name in data:
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise InvalidInput(f"is not a known field (known: {known})", field=name, code="unknown_field")
    for name, spec in fields.items():
        if name not in data or data[name] is None:
            if spec.required:
                raise InvalidInput("is required", field=name, code="missing_field")
            continue
        value = data[name]
        # bool is an int in Python; JSON true is never a number here.
        if not isinstance(value, spec.kind) or (spec.kind is int and isinstance(value, bool)):
            raise InvalidInput(f"must be {_kind_name(spec.kind)}", field=name, code="wrong_type")
        if isinstance(value, str) and len(value) > spec.max_length:
            raise InvalidInput(f"is longer than {spec.max_length} characters", field=name)
        if isinstance(value, list):
            _check_list(name, value, spec)
    return {name: data[name] for name in fields if data.get(name) is not None}


def _check_list(name: str, value: list[Any], spec: Field) -> None:
    if len(value) > spec.max_items:
        raise InvalidInput(f"has more than {spec.max_items} items", field=name)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidInput("must be a string", field=f"{name}[{i}]", code="wrong_type")
        if len(item) > spec.max_length:
            raise InvalidInput(f"is longer than {spec.max_length} characters", field=f"{name}[{i}]")


def _kind_name(kind: type) -> str:
    """With its article: "a string", "an integer"."""
    name = {str: "string", int: "integer", bool: "boolean", dict: "object", list: "array"}.get(kind, kind.__name__)
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"
