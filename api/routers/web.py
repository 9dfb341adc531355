"""The four web clients (customer, technician, auditor, operations), served as static files by
the API process itself: plain HTML and JS modules, no build step, nothing loaded from outside.

Static mounts stay out of the OpenAPI document; `/app/config.js` hands the browser the few
settings it needs (the optional map tile server)."""

import json
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from kit.config import get_settings

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(include_in_schema=False)


def content_security_policy() -> str:
    """Only this origin, plus the tile servers when configured: a page can never pull a
    script or a map tile from elsewhere by mistake."""
    settings = get_settings()
    tile_origins = ""
    for tiles in filter(None, (settings.map_tile_url, settings.map_tile_labels_url)):
        parts = urlsplit(tiles)
        # The host label holding Leaflet's {s} ("a", "t{s}", "webrd0{s}") becomes CSP's leading wildcard.
        host = ".".join("*" if "{s}" in label else label for label in parts.netloc.split("."))
        tile_origins += f" {parts.scheme}://{host}"
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data: blob:{tile_origins}; connect-src 'self' ws: wss:; "
            "manifest-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


class WebFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = content_security_policy()
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Revalidate each load: a deploy must reach phones without a hard refresh.
        response.headers["Cache-Control"] = "no-cache"
        return response


@router.get("/")
async def landing() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=307)


@router.get("/app/config.js")
async def config_js() -> Response:
    settings = get_settings()
    config = {"tileUrl": settings.map_tile_url, "tileAttribution": settings.map_tile_attribution,
              "tileSubdomains": settings.map_tile_subdomains, "tileLabelsUrl": settings.map_tile_labels_url,
              "tileDatum": settings.map_tile_datum, "currency": settings.currency}
    return Response(f"export default {json.dumps(config, ensure_ascii=False)};\n",
                    media_type="text/javascript", headers={"Cache-Control": "no-cache"})


router.mount("/app", WebFiles(directory=WEB_ROOT, html=True), name="web")
