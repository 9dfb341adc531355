"""Photos in the object store (kit/objects.py): content-addressed, written atomically, checked when
read, chosen by the settings; the API's photos land there; the migration moves the old bytes in.
The S3 backend runs against moto's S3-compatible server on loopback (a dev dependency)."""

import hashlib
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx import AsyncClient
from pydantic import ValidationError
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import objects
from kit.config import Settings
from kit.objects import FilesystemStore, ObjectCorrupt, ObjectMissing, S3ObjectStore, key_of, store_from
from tests.dispatch.test_certificate_photos import image, pending_certification, put_photo
from tests.factories import make_staff
from tests.field.support import in_service_job, png, upload_photo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FilesystemStore:
    """The store every photo of this test goes to: a directory of its own."""
    fs = FilesystemStore(tmp_path / "objects")
    monkeypatch.setattr(objects, "get_store", lambda: fs)
    return fs


def test_an_object_is_stored_once_under_its_sha256_and_read_back(tmp_path: Path) -> None:
    fs = FilesystemStore(tmp_path)
    digest = fs.put(b"photo bytes")
    assert digest == hashlib.sha256(b"photo bytes").hexdigest()
    assert (tmp_path / "sha256" / digest[:2] / digest).read_bytes() == b"photo bytes"
    assert fs.put(b"photo bytes") == digest
    assert fs.get(digest) == b"photo bytes"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]  # no temporary file left


async def test_a_missing_object_is_not_found_and_an_altered_one_is_refused(tmp_path: Path) -> None:
    fs = FilesystemStore(tmp_path)
    with pytest.raises(ObjectMissing):
        await fs.get_async(hashlib.sha256(b"never stored").hexdigest())
    digest = await fs.put_async(b"original")
    (tmp_path / key_of(digest)).write_bytes(b"altered")
    with pytest.raises(ObjectCorrupt):
        await fs.get_async(digest)
    with pytest.raises(ValueError):
        fs.get("../../etc/passwd")


def test_a_write_that_fails_midway_leaves_neither_an_object_nor_a_stray_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fs = FilesystemStore(tmp_path)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("kit.objects.os.fsync", disk_full)
    with pytest.raises(OSError):
        fs.put(b"half written")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    assert fs.get(fs.put(b"half written")) == b"half written"


def test_the_settings_choose_the_store() -> None:
    default = store_from(Settings(environment="test"))
    assert isinstance(default, FilesystemStore) and default.root == ROOT / "var" / "objects"
    assert store_from(Settings(environment="test", objects_dir="/srv/photos")).root == Path("/srv/photos")
    with pytest.raises(ValidationError, match="GASDISPATCH_OBJECT_STORE_S3_BUCKET"):
        Settings(environment="test", object_store="s3")
    s3 = store_from(Settings(environment="test", object_store="s3", object_store_s3_bucket="evidence",
                             object_store_s3_endpoint="https://minio.internal:9000", object_store_s3_prefix="gd"))
    assert isinstance(s3, S3ObjectStore)
    assert (s3.store.config["bucket"], s3.store.config["endpoint"], s3.store.prefix) == (
        "evidence", "https://minio.internal:9000", "gd")


async def test_a_job_photo_is_stored_in_the_object_store_and_served_from_it(
    client: AsyncClient, session: AsyncSession, redis, store: FilesystemStore,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    ref = await upload_photo(client, job)
    assert (store.root / key_of(ref)).read_bytes() == png()
    _, auditor = await make_staff(session, "auditor")
    url = f"/v1/orders/{job.order.id}/photos/{ref}"
    assert (await client.get(url, headers=auditor)).content == png()
    (store.root / key_of(ref)).write_bytes(png(shade=99))  # altered behind the system's back
    assert (await client.get(url, headers=auditor)).status_code == 500
    (store.root / key_of(ref)).unlink()
    assert (await client.get(url, headers=auditor)).status_code == 404


async def test_a_certificate_photo_is_stored_in_the_object_store_and_served_from_it(
    client: AsyncClient, session: AsyncSession, store: FilesystemStore,
) -> None:
    tech, cert_id = await pending_certification(session)
    body = image("JPEG")
    uploaded = await put_photo(client, tech.headers, cert_id, body, "image/jpeg")
    assert uploaded.status_code == 200, uploaded.text
    assert (store.root / key_of(uploaded.json()["sha256"])).read_bytes() == body
    assert (await client.get(f"/v1/certifications/{cert_id}/photo", headers=tech.headers)).content == body


def _migration():  # noqa: ANN202
    path = ROOT / "migrations" / "versions" / "2026-12-01-1410_dispatch_photo_objects.py"
    spec = importlib.util.spec_from_file_location("photo_objects_migration", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_migration_moves_the_photos_bytes_into_the_store_and_back(
    client: AsyncClient, session: AsyncSession, redis, tmp_path: Path,  # noqa: ANN001
) -> None:
    migration = _migration()
    job = await in_service_job(session, redis)
    ref = await upload_photo(client, job)
    tech, cert_id = await pending_certification(session)
    assert (await put_photo(client, tech.headers, cert_id, image("PNG"), "image/png")).status_code == 200
    # The tables as they were before the migration, holding only this test's rows (all rolled back).
    for table in migration.TABLES:
        await session.exec(text(f"DELETE FROM {table} WHERE sha256 NOT IN (:job, :cert)").bindparams(
            job=ref, cert=hashlib.sha256(image("PNG")).hexdigest()))
        await session.exec(text(f"ALTER TABLE {table} ADD COLUMN content bytea"))
    await session.exec(text("UPDATE field_job_photo SET content = :c").bindparams(c=png()))
    await session.exec(text("UPDATE dispatch_certificate_photo SET content = :c").bindparams(c=image("PNG")))
    connection = await session.connection()

    target = FilesystemStore(tmp_path / "moved")
    assert await connection.run_sync(lambda c: migration.copy_to_store(c, target)) == 2
    assert target.get(ref) == png()
    assert target.get(hashlib.sha256(image("PNG")).hexdigest()) == image("PNG")

    for table in migration.TABLES:
        await session.exec(text(f"UPDATE {table} SET content = NULL"))
    await connection.run_sync(lambda c: migration.copy_from_store(c, target))
    assert (await session.exec(text("SELECT content FROM field_job_photo"))).one()[0] == png()
    assert (await session.exec(text("SELECT content FROM dispatch_certificate_photo"))).one()[0] == image("PNG")

    await session.exec(text("UPDATE field_job_photo SET content = :c").bindparams(c=png(shade=7)))
    with pytest.raises(RuntimeError, match="has other bytes"):
        await connection.run_sync(lambda c: migration.copy_to_store(c, FilesystemStore(tmp_path / "again")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3-compatible server on loopback with an empty bucket `evidence`: its endpoint."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.put(f"{endpoint}/evidence", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_with_the_s3_backend_a_job_photo_goes_to_the_bucket_and_comes_back(
    client: AsyncClient, session: AsyncSession, redis, moto_s3: str, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    s3 = store_from(Settings(environment="test", object_store="s3", object_store_s3_bucket="evidence",
                             object_store_s3_endpoint=moto_s3, object_store_s3_prefix="gd",
                             object_store_s3_access_key_id="test", object_store_s3_secret_access_key="test"))
    monkeypatch.setattr(objects, "get_store", lambda: s3)
    job = await in_service_job(session, redis)
    ref = await upload_photo(client, job)
    listed = httpx.get(f"{moto_s3}/evidence").text
    assert f"<Key>gd/{key_of(ref)}</Key>" in listed
    _, admin = await make_staff(session, "admin")
    assert (await client.get(f"/v1/orders/{job.order.id}/photos/{ref}", headers=admin)).content == png()
    with pytest.raises(ObjectMissing):
        await s3.get_async(hashlib.sha256(b"never stored").hexdigest())
