"""Customers' addresses: the structured Chinese address composed into one line, what a technician
may see of it (district and street on an offer; the whole address, the customer's name and
navigation links once the job is his), and links to the phone's map apps.

Positions are stored in WGS-84 (what phones report). China's map apps draw on GCJ-02 (AMap,
Google's China road map) or BD-09 (Baidu): AMap's and Baidu's links say the coordinates are
WGS-84 (`coordinate=wgs84`, `coord_type=wgs84`) and those apps convert; Apple Maps converts WGS-84
itself; Google does not, so inside mainland China its link carries the point converted to GCJ-02
(`wgs84_to_gcj02`, the published approximation, within a few metres)."""

import math
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Address, Customer, Order
from kit.errors import InvalidInput, NotFound
from kit.geo import lonlat

# The order's states in which the technician is on his way or at the door: the whole address is his.
ON_THE_JOB = ("accepted", "en_route", "arrived", "in_service")
LINE_MAX = 200  # the line's column
PARTS = ("province", "city", "district", "street", "community", "building", "unit", "room")


class AddressInvalid(InvalidInput):
    """The address is incomplete or inconsistent; `field` names the part at fault."""

    slug = "address-invalid"
    fields = ("field",)

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.extra = {"field": field}


def compose_line(parts: dict[str, str | None]) -> str:
    """The address as written in China, largest first: 浙江省杭州市西湖区 文三路 90 号 翠苑一区 3幢 2单元 501室.
    Building, unit and room get their counters unless the customer typed them."""
    region = "".join(parts[p] or "" for p in ("province", "city", "district"))
    counted = [_counted(parts["building"], "幢", ("幢", "栋", "号楼", "楼")), _counted(parts["unit"], "单元", ("单元",)),
               _counted(parts["room"], "室", ("室", "房"))]
    return " ".join(p for p in (region, parts["street"], parts["community"], *counted) if p)


def _counted(value: str | None, counter: str, endings: tuple[str, ...]) -> str | None:
    if not value:
        return None
    return value if value.endswith(endings) else f"{value}{counter}"


def check_parts(parts: dict[str, str | None]) -> None:
    """A unit is found only inside its building: a unit without one is refused, naming the building."""
    if parts["unit"] and not parts["building"]:
        raise AddressInvalid("building", "a unit needs its building")


def set_place(address: Address, *, line: str | None, parts: dict[str, str | None] | None) -> None:
    """Writes the address from its parts (the line composed from them) or from a line alone (the
    parts cleared, so they never contradict it). One of the two, never both."""
    if line is not None and parts is not None:
        raise AddressInvalid("line", "send the structured address or a line, not both")
    if parts is not None:
        check_parts(parts)
        line = compose_line(parts)
        if len(line) > LINE_MAX:
            raise AddressInvalid("street", f"the whole address is longer than {LINE_MAX} characters")
    elif line is None:
        raise AddressInvalid("structured", "an address needs its parts")
    address.line = line
    for name in PARTS:
        setattr(address, name, (parts or {}).get(name))


def structured(address: Address) -> dict[str, str | None] | None:
    values = {p: getattr(address, p) for p in PARTS}
    return values if values["district"] else None  # addresses saved as a line only have none


# -- coordinates ---------------------------------------------------------------------------------

_A = 6378245.0  # Krasovsky 1940, the ellipsoid GCJ-02 is defined on
_EE = 0.00669342162296594323


def in_mainland_china(lon: float, lat: float) -> bool:
    """The rough box GCJ-02 applies in (the usual test; Hong Kong, Macao, Taiwan at its edges are inside it)."""
    return 72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271


def _shift(lon: float, lat: float) -> tuple[float, float]:
    x, y = lon - 105.0, lat - 35.0
    d_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    d_lat += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    d_lat += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    d_lat += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    d_lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    d_lon += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    d_lon += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    d_lon += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    d_lat = (d_lat * 180.0) / ((_A * (1 - _EE)) / (magic * math.sqrt(magic)) * math.pi)
    d_lon = (d_lon * 180.0) / (_A / math.sqrt(magic) * math.cos(rad) * math.pi)
    return d_lon, d_lat


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 of a WGS-84 point; unchanged outside mainland China, where maps use WGS-84."""
    if not in_mainland_china(lon, lat):
        return lon, lat
    d_lon, d_lat = _shift(lon, lat)
    return lon + d_lon, lat + d_lat


def navigation_links(lon: float, lat: float, label: str) -> dict[str, str]:
    """Routes to the point in each map app, as https links that open the app where installed (its
    web page elsewhere): AMap, Baidu, Apple and Google Maps."""
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    return {
        "amap": "https://uri.amap.com/navigation?" + urlencode({
            "to": f"{lon:.6f},{lat:.6f},{label}", "mode": "car", "coordinate": "wgs84", "callnative": "1",
            "src": "gasdispatch"}, quote_via=quote),
        "baidu": "https://api.map.baidu.com/marker?" + urlencode({
            "location": f"{lat:.6f},{lon:.6f}", "title": label, "content": label, "coord_type": "wgs84",
            "output": "html", "src": "gasdispatch"}, quote_via=quote),
        "apple": "https://maps.apple.com/?" + urlencode({"daddr": f"{lat:.6f},{lon:.6f}", "q": label}, quote_via=quote),
        "google": "https://www.google.com/maps/dir/?" + urlencode({
            "api": "1", "destination": f"{g_lat:.6f},{g_lon:.6f}"}, quote_via=quote),
    }


# -- what a technician sees ----------------------------------------------------------------------

@dataclass(frozen=True)
class JobAddress:
    full: bool  # False: an offer's district and street only
    district: str | None
    street: str | None
    line: str | None = None
    parts: dict[str, str | None] | None = None
    customer_name: str | None = None
    location: tuple[float, float] | None = None
    navigation: dict[str, str] | None = None


async def job_address(session: AsyncSession, order_id: uuid.UUID, technician_id: uuid.UUID, *,
                      offered: bool) -> JobAddress:
    """The address of an order for one technician. Holding a live offer for it (`offered`), he sees
    its district and street: enough to judge the trip, not to find the household. From acceptance
    until the job ends he sees it all; before and after, nothing (as any other technician)."""
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound("no such job")
    address = await session.get(Address, order.address_id)
    assert address is not None
    his_job = order.technician_id == technician_id and order.status in ON_THE_JOB
    if not his_job:
        if not offered:
            raise NotFound("no such job")
        return JobAddress(full=False, district=address.district, street=address.street)
    customer = await session.get(Customer, order.customer_id)
    assert customer is not None
    lon, lat = lonlat(order.location) or lonlat(address.location) or (0.0, 0.0)
    return JobAddress(full=True, district=address.district, street=address.street, line=address.line,
                      parts=structured(address), customer_name=customer.name, location=(lon, lat),
                      navigation=navigation_links(lon, lat, address.line))
