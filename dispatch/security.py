"""Password hashing (argon2), short-lived access tokens (JWT, HS256) and opaque refresh tokens."""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kit.config import get_settings
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


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says; the account must still agree (see accounts.authenticate)."""

    principal: Principal
    token_version: int
    expires_at: datetime


def issue_token(account_id: uuid.UUID, role: str, ttl_s: int | None = None, *, version: int = 0) -> tuple[str, datetime]:
    settings = get_settings()
    now = datetime.now(timezone.utc)
    expires = now + timedelta(seconds=ttl_s or settings.jwt_ttl_s)
    token = jwt.encode(
        {"sub": str(account_id), "role": role, "ver": version, "exp": expires, "iat": now},
        settings.jwt_secret,
        algorithm="HS256",
    )
    return token, expires


def decode_token(token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token, get_settings().jwt_secret, algorithms=["HS256"], options={"require": ["exp", "sub", "role", "ver"]}
        )
        return AccessClaims(Principal(uuid.UUID(claims["sub"]), str(claims["role"])), int(claims["ver"]),
                            datetime.fromtimestamp(claims["exp"], timezone.utc))
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
        raise AuthenticationFailed("invalid or expired token") from exc


def new_refresh_token() -> tuple[str, str]:
    """(the token the client keeps, the hash the server stores)."""
    token = secrets.token_urlsafe(32)
    return token, refresh_token_hash(token)


def refresh_token_hash(token: str) -> str:
    # The token is 256 random bits, so a plain hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()
