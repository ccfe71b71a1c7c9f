"""Reading a JSON request body strictly: size, content type, syntax, unknown fields and types are
each a 4xx naming what is wrong, never a 500."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from otp.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

MAX_BODY = 16 * 1024


@dataclass(frozen=True)
class Field:
    kind: type
    required: bool = False
    max_length: int = 256


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidInput("must be a number of bytes", field="Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes", field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, fields: Mapping[str, Field], *, optional_body: bool = False) -> dict[str, Any]:
    raw = await read_limited(request)
    if optional_body and not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("send Content-Type: application/json", field="Content-Type")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidInput("is nested too deeply", field="body", code="malformed_json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InvalidInput(f"is not valid JSON ({reason})", field="body", code="malformed_json") from None
    if not isinstance(data, dict):
        raise InvalidInput("must be a JSON object", field="body")
    return validate(data, fields)


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
            raise InvalidInput(f"must be a {_kind_name(spec.kind)}", field=name, code="wrong_type")
        if isinstance(value, str) and len(value) > spec.max_length:
            raise InvalidInput(f"is longer than {spec.max_length} characters", field=name)
    return {name: data[name] for name in fields if data.get(name) is not None}


def _kind_name(kind: type) -> str:
    return {str: "string", int: "integer", bool: "boolean", dict: "object", list: "array"}.get(kind, kind.__name__)
