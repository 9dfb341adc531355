"""What a household that smells gas must do, and whom to call. The steps travel as slugs that
the apps translate (api/web/shared/smellgas.js), in the order a person should follow them."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import City
from kit.config import Settings
from kit.errors import NotFound

GAS_LEAK_STEPS = ("leave_room", "no_flames_or_switches", "no_phone_inside", "open_windows_if_safe",
                  "close_meter_valve")
# The fire service answers gas emergencies everywhere in China, whatever the city's own line.
FIRE_SERVICE_NUMBER = "119"


async def hotlines(session: AsyncSession, settings: Settings, city_id: str | None = None) -> list[dict[str, Any]]:
    """The city's own line (the install's city unless one is named), then 119 always. The city's
    row is the source; the settings' line stands in where the row has none. A named city must
    exist; the install's city answers 119 alone even before its row is made."""
    name = city_id or settings.city
    city = await session.get(City, name)
    if city is None and city_id is not None:
        raise NotFound("no such city")
    city_line = (city.hotline if city else None) or settings.emergency_hotlines.get(name)
    found: list[dict[str, Any]] = [{"city": name, "number": city_line}] if city_line else []
    return [*found, {"number": FIRE_SERVICE_NUMBER}]
