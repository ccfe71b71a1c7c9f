"""The baseline for CPU per request: one POST route under the same Starlette + uvicorn stack as otp,
doing nothing but parse a small JSON body and answer a small JSON document."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse({"ok": True, "fields": len(data)}, status_code=201)


app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
