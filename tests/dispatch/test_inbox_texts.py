"""Every kind of notification the server writes has a title in the inbox of both languages
(`inbox.kind.<kind>`), so no notice shows as the generic "Notice" or in the server's prose."""

import re

import pytest

from dispatch.alerts import OPS_ALERT
from dispatch.handlers import _RELEASE_KIND, _STATUS_TEXT
from dispatch.notifications import MESSAGE
from tests.dispatch.test_app_texts_translated import LANGUAGES, ROOT, keys

PACKAGES = ("dispatch", "scheduling", "settlement", "meters", "ratings", "matching")
# notify(session, account, "kind", …) and the two helpers that pass their kind on to it.
_LITERAL_KIND = re.compile(r'\b(?:notify|_notify_customer|tell_customer)\(\s*session,\s*[\w.]+,\s*"([a-z_]+)"')


def sent_kinds() -> set[str]:
    found = {kind for package in PACKAGES for path in (ROOT / package).rglob("*.py")
             for kind in _LITERAL_KIND.findall(path.read_text(encoding="utf-8"))}
    # Kinds built in code: by the order's new status, by the action that took a job back, constants.
    return found | {f"order_{to}" for to in _STATUS_TEXT} | {*_RELEASE_KIND.values(), "job_released", MESSAGE, OPS_ALERT}


def test_the_walk_finds_the_servers_kinds() -> None:
    """Guards the pattern itself: finding nothing would make the next test pass."""
    assert {"offer", "payout", "hazard_found", "booking_moved", "booking_reminder", "order_completed"} <= sent_kinds()


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_notification_kind_has_an_inbox_title(language: str) -> None:
    missing = sorted(kind for kind in sent_kinds() if f"inbox.kind.{kind}" not in keys(language))
    assert not missing, f"notification kinds without an inbox title in {language}: {missing}"
