"""Application factory and lifecycle: load -> warm up -> ready -> serve -> drain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.trace import TracerProvider

from . import __version__
{%- if cookiecutter.workload in ['embeddings', 'llm'] %}
from .{{ cookiecutter.workload }} import service as workload
{%- endif %}
{%- if cookiecutter.workload == 'llm' and cookiecutter.monitoring == 'prometheus' %}
from .llm.metrics import GenerationMetrics
{%- endif %}
from .logging_config import configure_logging
{%- if cookiecutter.monitoring == 'prometheus' and cookiecutter.workload != 'llm' %}
from .metrics import ServiceMetrics
{%- endif %}
{%- if cookiecutter.monitoring == 'prometheus' %}
from .metrics import router as metrics_router
{%- endif %}
from .model import Model
from .serving import health, tracing
from .serving.deps import require_api_key
from .serving.errors import StartupFailed, install_error_handlers
from .serving.lifecycle import Service
from .serving.middleware import RequestContextMiddleware, UploadGuard
from .settings import Settings, get_settings
{%- if cookiecutter.workload in ['tts', 'vision'] %}
from .{{ cookiecutter.workload }} import service as workload
{%- endif %}

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    model_factory: Callable[[Settings], Any] = Model,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the app. Tests pass their own settings, a fake model factory or a tracer provider.

    Without ``tracer_provider``, the ``OTEL_*`` variables decide (``serving/tracing.py``).
    """
    settings = settings or get_settings()
    configure_logging(settings)
    telemetry = tracing.configure(tracer_provider or tracing.provider_from_environment())
{%- if cookiecutter.monitoring == 'prometheus' %}
    metrics = {{ 'GenerationMetrics' if cookiecutter.workload == 'llm' else 'ServiceMetrics' }}(settings.model_name, max_batch_size=settings.max_batch_size)
{%- else %}
    metrics = None
{%- endif %}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            service = await start_service(app)
        except Exception as exc:
            # one clear line (missing or corrupt model, no GPU...), then a non-zero exit
            logger.error("startup failed: %s: %s", type(exc).__name__, exc)
            logger.debug("startup traceback", exc_info=True)
            raise StartupFailed(str(exc)) from None
        try:
            yield
        finally:
{%- if cookiecutter.monitoring == 'prometheus' %}
            metrics.set_ready(False)
{%- endif %}
            await service.drain(settings.shutdown_timeout_s)
{%- if cookiecutter.monitoring == 'prometheus' %}
            metrics.close()
{%- endif %}

    async def start_service(app: FastAPI) -> Service:
        service = await workload.create_service(settings, lambda: model_factory(settings), metrics)
        app.state.service = service  # readiness now says "warming_up"
        await service.start()
{%- if cookiecutter.monitoring == 'prometheus' %}
        metrics.startup_timings(service.load_seconds, service.warmup_seconds)
        metrics.set_ready(True)
{%- endif %}
        logger.info(
            "ready: serving %s on %s, authentication %s",
            settings.model_name,
            service.model.device,
            "on (API_KEY)" if settings.api_key else "off (no API_KEY)",
        )
        return service

    app = FastAPI(
        title={{ cookiecutter.project_name | quoted }},
        version=__version__,
        lifespan=lifespan,
        # no "/path/" -> "/path" redirects: their Location would be built from the client's
        # Host header, and they would answer before the API key is checked
        redirect_slashes=False,
        telemetry=telemetry,
    )
    app.state.settings = settings
    app.state.uploads = UploadGuard(settings.max_upload_bytes_in_flight)  # closed by SIGTERM
    app.state.api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
{%- if cookiecutter.monitoring == 'prometheus' %}
    app.state.metrics = metrics
{%- endif %}
    install_error_handlers(app)
    app.include_router(health.router)
{%- if cookiecutter.monitoring == 'prometheus' %}
    app.include_router(metrics_router)
{%- endif %}
    for router in workload.OPEN_ROUTERS:
        app.include_router(router)
    for router in workload.PROTECTED_ROUTERS:
        app.include_router(router, dependencies=[Depends(require_api_key)])
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_read_timeout_s=settings.body_read_timeout_s,
        uploads=app.state.uploads,
        observer=metrics,
    )
    return app
