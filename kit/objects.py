"""Content-addressed objects (evidence photos): bytes named by their sha256, written once and
checked against that name whenever they are read back. On the local filesystem by default
(under the deployment's var/objects), or in an S3-compatible bucket (AWS S3, MinIO, Ceph, the S3
APIs of OSS and COS) when GASDISPATCH_OBJECT_STORE=s3. Sync methods serve migrations, async ones
requests. The only module that imports obstore."""

import asyncio
import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import obstore
from obstore.store import S3Store

from kit.config import Settings, get_settings
from kit.errors import NotFound

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ObjectMissing(NotFound):
    """No object by that digest in the store."""


class ObjectCorrupt(RuntimeError):
    """The stored bytes no longer hash to their name: altered or damaged behind our back."""


def digest_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def key_of(digest: str) -> str:
    """The object's key: a two-character fan-out keeps any one directory (or listing) small."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return f"sha256/{digest[:2]}/{digest}"


def _checked(digest: str, content: bytes) -> bytes:
    if digest_of(content) != digest:
        raise ObjectCorrupt(f"object {digest} does not match its content")
    return content


class ObjectStore(ABC):
    """Puts are idempotent (the same bytes have the same key); gets verify the bytes."""

    def put(self, content: bytes) -> str:
        digest = digest_of(content)
        self._write(key_of(digest), content)
        return digest

    def get(self, digest: str) -> bytes:
        return _checked(digest, self._read(key_of(digest)))

    async def put_async(self, content: bytes) -> str:
        digest = digest_of(content)
        await self._write_async(key_of(digest), content)
        return digest

    async def get_async(self, digest: str) -> bytes:
        return _checked(digest, await self._read_async(key_of(digest)))

    @abstractmethod
    def _write(self, key: str, content: bytes) -> None: ...

    @abstractmethod
    def _read(self, key: str) -> bytes: ...

    async def _write_async(self, key: str, content: bytes) -> None:
        await asyncio.to_thread(self._write, key, content)

    async def _read_async(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)


class FilesystemStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _write(self, key: str, content: bytes) -> None:
        path = self.root / key
        if path.exists():  # same key, same bytes
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, flushed to disk, then renamed into place: a reader never sees half a file,
        # and a crash leaves at worst a stray temporary file, never a wrong object.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"no object {key}") from exc


class S3ObjectStore(ObjectStore):
    """A bucket through obstore: an S3 PUT is atomic, so overwriting the same bytes is harmless."""

    def __init__(self, *, bucket: str, endpoint: str | None, region: str, access_key_id: str | None,
                 secret_access_key: str | None, prefix: str) -> None:
        options = {"endpoint": endpoint, "access_key_id": access_key_id, "secret_access_key": secret_access_key}
        self.store = S3Store(bucket, prefix=prefix or None, region=region,
                             client_options={"allow_http": bool(endpoint and endpoint.startswith("http://"))},
                             **{k: v for k, v in options.items() if v})  # unset: obstore's AWS_* / instance credentials

    def _write(self, key: str, content: bytes) -> None:
        obstore.put(self.store, key, content)

    def _read(self, key: str) -> bytes:
        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError as exc:
            raise ObjectMissing(f"no object {key}") from exc

    async def _write_async(self, key: str, content: bytes) -> None:
        await obstore.put_async(self.store, key, content)

    async def _read_async(self, key: str) -> bytes:
        try:
            return bytes(await (await obstore.get_async(self.store, key)).bytes_async())
        except FileNotFoundError as exc:
            raise ObjectMissing(f"no object {key}") from exc


def store_from(settings: Settings) -> ObjectStore:
    if settings.object_store == "s3":
        assert settings.object_store_s3_bucket  # the settings refuse s3 without a bucket
        return S3ObjectStore(bucket=settings.object_store_s3_bucket, endpoint=settings.object_store_s3_endpoint,
                             region=settings.object_store_s3_region, prefix=settings.object_store_s3_prefix,
                             access_key_id=settings.object_store_s3_access_key_id,
                             secret_access_key=settings.object_store_s3_secret_access_key)
    return FilesystemStore(settings.objects_dir)


@lru_cache
def get_store() -> ObjectStore:
    return store_from(get_settings())
