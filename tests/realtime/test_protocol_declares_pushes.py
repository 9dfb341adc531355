"""Every kind of message the server pushes to a socket is declared in the published schema
(api/ws/protocol.py, served at /v1/ws/schema), so that a client can be written from it."""

import re
from pathlib import Path
from typing import get_args

from api.ws.protocol import ServerMessage

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "dispatch", "kit", "matching", "meters", "ratings", "settlement")
PUSH = re.compile(r"\bpush_(?:after_commit|now)\(\s*[^,]+,\s*[^,]+,\s*\"([a-z_]+)\"")


def pushed_kinds() -> set[str]:
    kinds = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            kinds.update(PUSH.findall(path.read_text(encoding="utf-8")))
    return kinds


def test_every_pushed_kind_is_in_the_schema() -> None:
    kinds = pushed_kinds()
    assert {"offer", "reposition", "alert"} <= kinds  # the scan finds the pushes at all
    declared = set(get_args(ServerMessage.model_fields["type"].annotation))
    assert kinds - declared == set()
