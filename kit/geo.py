"""Conversions between GeoJSON-ish values, shapely and PostGIS geography (lon/lat, SRID 4326)."""

from typing import Any

from geoalchemy2.elements import WKBElement, WKTElement
from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import Point, Polygon, mapping, shape


def point(lon: float, lat: float) -> WKTElement:
    return WKTElement(f"POINT({lon} {lat})", srid=4326)


def lonlat(value: WKBElement | WKTElement | None) -> tuple[float, float] | None:
    if value is None:
        return None
    p = to_shape(value)
    return (p.x, p.y)


def polygon_from_geojson(geojson: dict[str, Any]) -> WKBElement:
    return from_shape(shape(geojson), srid=4326)


def to_geojson(value: WKBElement | WKTElement | None) -> dict[str, Any] | None:
    if value is None:
        return None
    geom = to_shape(value)
    out = mapping(geom)
    # shapely returns tuples; GeoJSON clients expect lists.
    return {"type": out["type"], "coordinates": _listify(out["coordinates"])}


def _listify(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_listify(v) for v in value]
    return value


def shapely_point(lon: float, lat: float) -> Point:
    return Point(lon, lat)


def is_valid_polygon(geojson: dict[str, Any]) -> bool:
    geom = shape(geojson)
    return isinstance(geom, Polygon) and geom.is_valid and not geom.is_empty
