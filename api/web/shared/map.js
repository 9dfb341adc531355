// Maps that work without the internet: vector layers (service areas, points, route lines) on a
// plain background; base tiles only when the deployment configures them (GASDISPATCH_MAP_TILE_URL,
// see the README for Tianditu, AMap and OSM), and the plain map again whenever they fail to load.
// Leaflet (vendored, see /app/vendor/leaflet/README.md) is loaded as a classic script: window.L.
import config from "/app/config.js";
import { t } from "./i18n.js";

const L = window.L;
export const COLORS = { station: "#0b5cad", address: "#b42318", technician: "#146c2e", route: "#6941c6",
  emergency: "#b42318", urgent: "#b54708", routine: "#0b5cad" };

// Positions are WGS-84 everywhere in the API. AMap's tiles are drawn on GCJ-02 (China's shifted
// datum): on them every point is shifted for display, and a dragged pin shifted back.
const GCJ = config.tileUrl && config.tileDatum === "gcj02";

function inChina(lon, lat) {
  return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;
}

/** The published WGS-84 -> GCJ-02 approximation (the same as dispatch/addresses.py). */
function toGcj(lon, lat) {
  if (!inChina(lon, lat)) return [lon, lat];
  const a = 6378245.0, ee = 0.00669342162296594323, PI = Math.PI;
  const x = lon - 105.0, y = lat - 35.0;
  let dLat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  dLat += (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0;
  dLat += (20.0 * Math.sin(y * PI) + 40.0 * Math.sin(y / 3.0 * PI)) * 2.0 / 3.0;
  dLat += (160.0 * Math.sin(y / 12.0 * PI) + 320 * Math.sin(y * PI / 30.0)) * 2.0 / 3.0;
  let dLon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  dLon += (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0;
  dLon += (20.0 * Math.sin(x * PI) + 40.0 * Math.sin(x / 3.0 * PI)) * 2.0 / 3.0;
  dLon += (150.0 * Math.sin(x / 12.0 * PI) + 300.0 * Math.sin(x / 30.0 * PI)) * 2.0 / 3.0;
  const rad = lat / 180.0 * PI;
  const magic = 1 - ee * Math.sin(rad) ** 2;
  dLat = (dLat * 180.0) / ((a * (1 - ee)) / (magic * Math.sqrt(magic)) * PI);
  dLon = (dLon * 180.0) / (a / Math.sqrt(magic) * Math.cos(rad) * PI);
  return [lon + dLon, lat + dLat];
}

/** [lon, lat] in WGS-84 -> Leaflet [lat, lon] on the map's datum. */
function display(lon, lat) {
  const [x, y] = GCJ ? toGcj(lon, lat) : [lon, lat];
  return [y, x];
}

/** A point on the map -> GeoJSON in WGS-84; on GCJ-02 tiles the shift is undone by a few
 * fixed-point steps (it varies slowly, so each step gains about a thousandfold). */
export function toPoint(latlng) {
  let [lon, lat] = [latlng.lng, latlng.lat];
  if (GCJ) {
    for (let i = 0; i < 4; i += 1) {
      const [x, y] = toGcj(lon, lat);
      lon -= x - latlng.lng;
      lat -= y - latlng.lat;
    }
  }
  return { type: "Point", coordinates: [lon, lat] };
}

/** GeoJSON Point -> Leaflet [lat, lon]. */
export const latLng = (point) => display(point.coordinates[0], point.coordinates[1]);

/** Tooltip content that Leaflet shows as plain text: it puts a string tooltip into innerHTML, and
 * labels carry names users typed (or stored before names were restricted). A fresh node per opening. */
const asText = (text) => () => document.createTextNode(String(text));

// Tiles that fail this many times in a row, none loading between (offline, a blocked or dead tile
// server), give way to the plain map, which needs nothing from the network.
const FAILURES_BEFORE_FALLBACK = 4;

function addTiles(map, element) {
  const options = { maxZoom: 19, subdomains: config.tileSubdomains || "abc" };
  const layers = [L.tileLayer(config.tileUrl, { ...options, attribution: config.tileAttribution }),
    config.tileLabelsUrl && L.tileLayer(config.tileLabelsUrl, options)].filter(Boolean);
  let failures = 0;
  element.dataset.tiles = "on";
  for (const layer of layers) {
    layer.on("tileload", () => { failures = 0; });
    layer.on("tileerror", () => {
      failures += 1;
      if (failures < FAILURES_BEFORE_FALLBACK || element.dataset.tiles === "fallback") return;
      element.dataset.tiles = "fallback";
      for (const each of layers) each.remove();
      const note = L.control({ position: "bottomleft" });
      note.onAdd = () => {
        const box = L.DomUtil.create("div", "map-fallback");
        Object.assign(box.style, { background: "rgb(255 255 255 / .9)", padding: "2px 6px", borderRadius: "4px", fontSize: ".8rem" });
        box.textContent = t("map.tilesFallback");
        return box;
      };
      note.addTo(map);
    });
    layer.addTo(map);
  }
}

export function createMap(element, { center = [30.274, 120.155], zoom = 14 } = {}) {
  const map = L.map(element, { attributionControl: Boolean(config.tileUrl), zoomSnap: 0.5 });
  if (config.tileUrl) addTiles(map, element);
  else element.dataset.tiles = "none";
  map.setView(center, zoom);
  return map;
}

/** The customer's pin: dragged (or put where the map is tapped) to the door; `onMove` gets the
 * GeoJSON point in WGS-84. A drawn pin, no image to fetch. */
export function pin(map, point, onMove) {
  const head = document.createElement("span");
  Object.assign(head.style, { display: "block", width: "26px", height: "26px", background: COLORS.address,
    border: "3px solid #fff", borderRadius: "50% 50% 50% 0", transform: "rotate(-45deg)", boxShadow: "0 1px 4px rgb(0 0 0 / .5)" });
  const marker = L.marker(latLng(point), { draggable: true, autoPan: true, title: t("customer.pinMapLabel"),
    icon: L.divIcon({ className: "address-pin", html: head, iconSize: [32, 32], iconAnchor: [16, 34] }) });
  marker.on("dragend", () => onMove(toPoint(marker.getLatLng())));
  map.on("click", (event) => { marker.setLatLng(event.latlng); onMove(toPoint(event.latlng)); });
  return marker;
}

export function stationLayer(stations) {
  return L.geoJSON({ type: "FeatureCollection", features: stations.map((s) => ({
    type: "Feature", geometry: s.service_area, properties: { name: s.name } })) }, {
    coordsToLatLng: ([lon, lat]) => L.latLng(display(lon, lat)),
    style: { color: COLORS.station, weight: 1.5, fillOpacity: 0.06, dashArray: "4 4" },
    onEachFeature: (feature, layer) => layer.bindTooltip(asText(feature.properties.name)),
  });
}

export function dot(point, { color = COLORS.address, radius = 8, label, fill = 0.9 } = {}) {
  const marker = L.circleMarker(latLng(point), { color: "#fff", weight: 2, fillColor: color, fillOpacity: fill, radius });
  if (label) marker.bindTooltip(asText(label));
  return marker;
}

export function line(points, color = COLORS.route) {
  return L.polyline(points.map(latLng), { color, weight: 3, dashArray: "6 6" });
}

/** A `dot` moved and restyled in place: a tooltip open on it stays open (redrawing would close it). */
export function redot(marker, point, { color = COLORS.address, radius = 8, label } = {}) {
  marker.setLatLng(latLng(point));
  marker.setStyle({ fillColor: color });
  marker.setRadius(radius);
  if (label) marker.setTooltipContent(asText(label));
  return marker;
}

/** A numbered stop of a route: its number on a disc (a div icon, no image to fetch). Not focusable:
 * the list beside the map is the way through the stops by keyboard. */
export function numbered(point, n, { color = COLORS.route, label } = {}) {
  const disc = document.createElement("span");
  disc.textContent = String(n);
  disc.style.background = color;
  const marker = L.marker(latLng(point), { keyboard: false,
    icon: L.divIcon({ className: "stop-marker", html: disc, iconSize: [28, 28], iconAnchor: [14, 14] }) });
  if (label) marker.bindTooltip(asText(label));
  return marker;
}

/** Fits the map around the given layers (skipping empty groups). */
export function fit(map, layers, maxZoom = 16) {
  const group = L.featureGroup(layers.filter(Boolean));
  const bounds = group.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.25), { maxZoom });
}

/** Great-circle distance in metres between two GeoJSON points. */
export function distanceM(a, b) {
  const wgs = (p) => L.latLng(p.coordinates[1], p.coordinates[0]);
  return wgs(a).distanceTo(wgs(b));
}

export { L };
