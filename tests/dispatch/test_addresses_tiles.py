"""Base map tiles per deployment: the apps read them from /app/config.js, and the pages' CSP admits
exactly the configured tile hosts (Tianditu's t0-t7 and AMap's webrd01-04 through a wildcard)."""

import json

import pytest
from httpx import AsyncClient

from kit.config import get_settings

TIANDITU = ("https://t{s}.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=vec&STYLE=default"
            "&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=KEY")
TIANDITU_LABELS = TIANDITU.replace("vec_w", "cva_w").replace("LAYER=vec", "LAYER=cva")
AMAP = "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}"


def img_sources(response) -> list[str]:  # noqa: ANN001
    policy = response.headers["content-security-policy"]
    [directive] = [d.strip() for d in policy.split(";") if d.strip().startswith("img-src")]
    return directive.split()[1:]


async def config_of(client: AsyncClient) -> dict:
    response = await client.get("/app/config.js")
    assert response.headers["content-type"].startswith("text/javascript")
    text = response.text.strip()
    assert text.startswith("export default ") and text.endswith(";")
    return json.loads(text.removeprefix("export default ").removesuffix(";"))


async def test_without_tiles_the_apps_draw_the_plain_map_and_load_no_image_from_elsewhere(client: AsyncClient) -> None:
    config = await config_of(client)
    assert config["tileUrl"] is None and config["tileLabelsUrl"] is None
    assert img_sources(await client.get("/app/customer/")) == ["'self'", "data:", "blob:"]


async def test_tianditu_base_and_labels_reach_the_apps_and_the_policy(
        client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "map_tile_url", TIANDITU)
    monkeypatch.setattr(settings, "map_tile_labels_url", TIANDITU_LABELS)
    monkeypatch.setattr(settings, "map_tile_subdomains", "01234567")
    config = await config_of(client)
    assert (config["tileUrl"], config["tileLabelsUrl"], config["tileSubdomains"], config["tileDatum"]) == (
        TIANDITU, TIANDITU_LABELS, "01234567", "wgs84")
    assert img_sources(await client.get("/app/technician/")) == [
        "'self'", "data:", "blob:", "https://*.tianditu.gov.cn", "https://*.tianditu.gov.cn"]


async def test_amap_tiles_come_with_their_gcj02_datum(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "map_tile_url", AMAP)
    monkeypatch.setattr(settings, "map_tile_datum", "gcj02")
    config = await config_of(client)
    assert config["tileDatum"] == "gcj02"
    assert img_sources(await client.get("/app/customer/"))[3:] == ["https://*.is.autonavi.com"]


def test_an_unknown_datum_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from kit.config import Settings

    with pytest.raises(ValidationError, match="map_tile_datum"):
        Settings(environment="test", map_tile_datum="bd09")
