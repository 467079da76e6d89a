"""Liveness and readiness probes (always open, never behind the API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


def readiness_response(request: Request) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    readiness = service.readiness
    if readiness.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if not readiness.ready:
        return JSONResponse({"status": "warming_up"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/health/live", summary="The process is up and serving HTTP")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/health/ready",
    summary="The model is loaded and warmed up, and the service is not draining",
    responses={503: {"description": "Loading, warming up or draining"}},
)
async def ready(request: Request) -> JSONResponse:
    return readiness_response(request)
