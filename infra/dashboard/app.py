"""`warden dashboard`: a live page for operators, on 127.0.0.1.

The page (static/) opens one server-sent event stream and redraws on every snapshot; the
snapshot is built from the three feeds (feeds.py), never from the stream's hot path. Read-only:
it changes nothing anywhere, so it needs no login.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from infra.context import Context
from infra.dashboard.feeds import AlertFeed, RegistryFeed, StreamFeed
from infra.settings import Settings

STATIC = Path(__file__).with_name("static")
PUSH_SECONDS = 2.0


class Dashboard:
    """The feeds and the snapshot the page draws."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stream = StreamFeed(settings)
        self.alerts = AlertFeed(settings)
        self.registry = RegistryFeed(settings)
        self._lock = threading.Lock()  # one tail of the stream's files, however many pages are open

    def start(self) -> None:
        self.alerts.start()
        self.registry.start()

    def stop(self) -> None:
        self.alerts.stop()
        self.registry.stop()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self.stream.poll()
            stream = self.stream.panel()
        return {
            "at": time.time(),
            "links": {
                "mlflow": self.settings.mlflow_tracking_uri,
                "airflow": self.settings.airflow.url,
                "metrics": f"http://127.0.0.1:{self.settings.metrics_port}/metrics",
            },
            "stream": stream,
            "alerts": self.alerts.panel(),
            "registry": self.registry.panel(),
        }


def _json(value: Any) -> bytes:
    # orjson writes NaN as null, which the browser's JSON.parse accepts.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def create_app(settings: Settings) -> FastAPI:
    # The dashboard's context: it reads the registry (MLflow) and the stream's files, never Spark.
    dashboard = Dashboard(Context.build("warden-dashboard", settings).settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dashboard.start()
        yield
        dashboard.stop()

    app = FastAPI(title="streamwarden dashboard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/snapshot")
    def snapshot() -> Response:
        return Response(_json(dashboard.snapshot()), media_type="application/json")

    @app.get("/api/events")
    async def events() -> StreamingResponse:
        async def push() -> AsyncIterator[bytes]:
            while True:
                snapshot = await asyncio.to_thread(dashboard.snapshot)
                yield b"data: " + _json(snapshot) + b"\n\n"
                await asyncio.sleep(PUSH_SECONDS)

        return StreamingResponse(push(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def serve(settings: Settings) -> None:
    """Serve the dashboard until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.dashboard_port, log_level="warning")
