"""Loads the peer conformance corpus copied from /work/shared/testdata/meters (see data/README.md)."""

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"


def frames(name: str) -> list[dict]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))["frames"]


def raw(entry: dict) -> bytes:
    return bytes.fromhex(entry["hex"])
