"""What a household that smells gas must do, and whom to call. The steps travel as slugs that
the apps translate (api/web/shared/smellgas.js), in the order a person should follow them."""

from typing import Any

from kit.config import Settings

GAS_LEAK_STEPS = ("leave_room", "no_flames_or_switches", "no_phone_inside", "open_windows_if_safe",
                  "close_meter_valve")
# The fire service answers gas emergencies everywhere in China, whatever the city's own line.
FIRE_SERVICE_NUMBER = "119"


def hotlines(settings: Settings) -> list[dict[str, Any]]:
    """The install's city line when one is set, then 119 always."""
    city_line = settings.emergency_hotlines.get(settings.city)
    found: list[dict[str, Any]] = [{"city": settings.city, "number": city_line}] if city_line else []
    return [*found, {"number": FIRE_SERVICE_NUMBER}]
