"""Imports every package's tables so Alembic sees the whole schema."""

import importlib

MODEL_MODULES = (
    "kit.models",
    "dispatch.models",
    "dispatch.alerts",
    "dispatch.stations",
    "dispatch.certificate_photos",
    "settlement.models",
    "matching.models",
    "matching.candidates",
    "ratings.models",
    "meters.models",
    "dispatch.field.models",
    "scheduling.models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
