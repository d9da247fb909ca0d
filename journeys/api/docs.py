"""The interactive API docs (`/docs`), served entirely from this package: Swagger UI's script,
stylesheet and icon ship in journeys/api/static/swagger-ui, so the page works offline and loads
nothing from a CDN. ReDoc is not served."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import FileResponse, HTMLResponse

from journeys.errors import NotFound

STATIC = Path(__file__).resolve().parent / "static" / "swagger-ui"
ASSETS: dict[str, tuple[str, str]] = {  # URL name -> (file, content type)
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "favicon.png": ("favicon-32x32.png", "image/png"),
}
ASSET_PREFIX = "/docs/assets/"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    assets = root + ASSET_PREFIX
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} — API docs",
        swagger_js_url=assets + "swagger-ui-bundle.js",
        swagger_css_url=assets + "swagger-ui.css",
        swagger_favicon_url=assets + "favicon.png",
        # No online validator badge: it would fetch from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(ASSET_PREFIX + "{name}")
async def swagger_ui_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"no docs asset {name}")
    filename, media_type = ASSETS[name]
    return FileResponse(STATIC / filename, media_type=media_type)
