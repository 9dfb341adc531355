"""Alembic environment: async engine from settings; PostGIS-aware autogenerate."""

import asyncio

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy.engine import Connection

from kit.config import get_settings
from kit.db import metadata
from migrations.models import import_all_models

import_all_models()
config = context.config

# PostGIS and its tiger/topology schemas own tables Alembic must not try to drop.
_POSTGIS_TABLES = {"spatial_ref_sys", "layer", "topology"}


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001, ANN201
    if type_ == "table" and reflected and compare_to is None and name in _POSTGIS_TABLES:
        return False
    # meters_reading and its monthly partitions: partitioned DDL is hand-written in meters_0001.
    if type_ == "table" and name.startswith("meters_reading"):
        return False
    # pgqueuer's tables are created and upgraded by pgqueuer's own SQL (kit_0001).
    if type_ == "table" and name.startswith("pgqueuer"):
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    url = config.attributes.get("database_url") or get_settings().database_url
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
connection = config.attributes.get("connection")
if connection is not None:
    _configure(connection)
else:
    asyncio.run(_run_async())
