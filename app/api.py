"""Plain HTTP API (``/api/v1/*``), served by the same process and port as the UI.

Reflex mounts itself under this FastAPI app (``rx.App(api_transformer=api)``).
Swagger UI is off: it loads its JS from a CDN, which offline machines cannot reach.
"""

from __future__ import annotations

from importlib import metadata

from fastapi import FastAPI

api = FastAPI(title="flowdesk API", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")


def _version() -> str:
    try:
        return metadata.version("flowdesk")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


@api.get("/api/v1/health")
async def health() -> dict[str, object]:
    """Liveness: the web process is up and serving requests."""
    return {"ok": True, "service": "flowdesk", "version": _version()}
