"""Domain errors. They carry no HTTP status: api/errors.py maps each to problem+json."""


class DomainError(Exception):
    slug = "domain-error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__doc__ or self.slug)
        self.detail = detail or (self.__class__.__doc__ or self.slug).strip()


class NotFound(DomainError):
    """The resource does not exist or is not yours."""

    slug = "not-found"


class Forbidden(DomainError):
    """Your role may not do this."""

    slug = "forbidden"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    slug = "conflict"


class IllegalTransition(Conflict):
    """The order cannot make this transition from its current state."""

    slug = "illegal-transition"


class InvalidInput(DomainError):
    """The request is well-formed but not acceptable."""

    slug = "invalid-input"


class CertificationNotUsable(InvalidInput):
    """The certification is not verified or not valid now."""

    slug = "certification-not-usable"


class AuthenticationFailed(DomainError):
    """Wrong credentials or an invalid token."""

    slug = "authentication-failed"


class TooManyAttempts(DomainError):
    """Too many attempts; wait before trying again."""

    slug = "too-many-attempts"

    def __init__(self, detail: str = "", retry_after_s: int = 60) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class IdempotencyConflict(Conflict):
    """This Idempotency-Key was used with a different request."""

    slug = "idempotency-key-reused"


class WeakPassword(InvalidInput):
    """The password is too short, too common or too close to the email."""

    slug = "weak-password"


class AccountDisabled(Forbidden):
    """This account has been disabled by the operator."""

    slug = "account-disabled"


class RefreshTokenReused(AuthenticationFailed):
    """This refresh token was already used; every session it belongs to is signed out."""

    slug = "refresh-token-reused"
