"""``POST /_bench/read-body``: read the request body, answer its length, nothing else.

Mounted only when ``BENCH_ENDPOINT=true``. ``scripts/bench.py`` sends it the
same body as the inference route: its req/s is what this very server (HTTP
parsing, middleware, routing, reading the body, a small JSON answer) can do
with no model at all, the ceiling any inference route is measured against.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(include_in_schema=False)


@router.post("/_bench/read-body")
async def read_body(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})
