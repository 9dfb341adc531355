"""Errors of accounts, people and orders. They carry no HTTP status: api/errors.py maps each to problem+json."""

from kit.errors import Conflict, DomainError, Forbidden, InvalidInput


class IllegalTransition(Conflict):
    """The order cannot make this transition from its current state."""

    slug = "illegal-transition"


class CertificationNotUsable(InvalidInput):
    """The certification is not verified or not valid now."""

    slug = "certification-not-usable"


class AuthenticationFailed(DomainError):
    """Wrong credentials or an invalid token."""

    slug = "authentication-failed"


class WeakPassword(InvalidInput):
    """The password is too short, too common or too close to the email."""

    slug = "weak-password"
    fields = ("reason", "min_length")

    def __init__(self, reason: str, min_length: int, detail: str) -> None:
        """`reason`: too_short, is_email or too_common."""
        super().__init__(detail)
        self.extra = {"reason": reason, "min_length": min_length}


class AccountDisabled(Forbidden):
    """This account has been disabled by the operator."""

    slug = "account-disabled"


class RefreshTokenReused(AuthenticationFailed):
    """This refresh token was already used; every session it belongs to is signed out."""

    slug = "refresh-token-reused"
