// Maps that work without the internet: vector layers (service areas, points, route lines) on a
// plain background; a tile layer only when the deployment configures GASDISPATCH_MAP_TILE_URL.
// Leaflet (vendored, see /app/vendor/leaflet/README.md) is loaded as a classic script: window.L.
import config from "/app/config.js";

const L = window.L;
export const COLORS = { station: "#0b5cad", address: "#b42318", technician: "#146c2e", route: "#6941c6",
  emergency: "#b42318", urgent: "#b54708", routine: "#0b5cad" };

/** GeoJSON Point -> Leaflet [lat, lon]. */
export const latLng = (point) => [point.coordinates[1], point.coordinates[0]];

/** Tooltip content that Leaflet shows as plain text: it puts a string tooltip into innerHTML, and
 * labels carry names users typed (or stored before names were restricted). A fresh node per opening. */
const asText = (text) => () => document.createTextNode(String(text));

export function createMap(element, { center = [30.274, 120.155], zoom = 14 } = {}) {
  const map = L.map(element, { attributionControl: Boolean(config.tileUrl), zoomSnap: 0.5 });
  if (config.tileUrl) L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: config.tileAttribution }).addTo(map);
  map.setView(center, zoom);
  return map;
}

export function stationLayer(stations) {
  return L.geoJSON({ type: "FeatureCollection", features: stations.map((s) => ({
    type: "Feature", geometry: s.service_area, properties: { name: s.name } })) }, {
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
  return L.latLng(latLng(a)).distanceTo(L.latLng(latLng(b)));
}

export { L };
