"""Password hashing (argon2) and bearer tokens (JWT, HS256, short-lived, role + subject)."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dispatch.config import get_settings
from dispatch.errors import AuthenticationFailed

_hasher = PasswordHasher()
# Verifying against this when the account does not exist keeps timing uniform.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID
    role: str


def issue_token(account_id: uuid.UUID, role: str, ttl_s: int | None = None) -> tuple[str, datetime]:
    settings = get_settings()
    expires = datetime.now(timezone.utc) + timedelta(seconds=ttl_s or settings.jwt_ttl_s)
    token = jwt.encode(
        {"sub": str(account_id), "role": role, "exp": expires, "iat": datetime.now(timezone.utc)},
        settings.jwt_secret,
        algorithm="HS256",
    )
    return token, expires


def decode_token(token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, get_settings().jwt_secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
        return Principal(uuid.UUID(claims["sub"]), str(claims["role"]))
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise AuthenticationFailed("invalid or expired token") from exc
