"""The errors every package raises. They carry no HTTP status: api/errors.py maps each to problem+json."""

import math


class DomainError(Exception):
    slug = "domain-error"
    # The structured fields every instance puts in `extra`: the problem body carries them so the
    # apps word the message themselves (the English `detail` is for logs and developers).
    fields: tuple[str, ...] = ()

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__doc__ or self.slug)
        self.detail = detail or (self.__class__.__doc__ or self.slug).strip()
        self.extra: dict[str, object] = {}


class NotFound(DomainError):
    """The resource does not exist or is not yours."""

    slug = "not-found"


class Forbidden(DomainError):
    """Your role may not do this."""

    slug = "forbidden"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    slug = "conflict"


class InvalidInput(DomainError):
    """The request is well-formed but not acceptable."""

    slug = "invalid-input"


class TooManyAttempts(DomainError):
    """Too many attempts; wait before trying again."""

    slug = "too-many-attempts"
    fields = ("retry_after_s",)

    def __init__(self, detail: str = "", retry_after_s: int = 60) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.extra = {"retry_after_s": retry_after_s}


class IdempotencyConflict(Conflict):
    """This Idempotency-Key was used with a different request."""

    slug = "idempotency-key-reused"


class NotReady(DomainError):
    """A precondition is not met yet (a capture before its hold); the engine tries again later."""

    slug = "not-ready"
    fields = ("retry_after_s",)

    def __init__(self, detail: str = "", retry_after_s: float = 5.0) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.extra = {"retry_after_s": math.ceil(retry_after_s)}


class ServiceUnavailable(DomainError):
    """A provider this request needs is not answering; try again shortly."""

    slug = "service-unavailable"
    fields = ("service", "retry_after_s")

    def __init__(self, service: str, detail: str = "", retry_after_s: int = 30) -> None:
        super().__init__(detail or f"{service} unavailable; try again shortly")
        self.retry_after_s = retry_after_s
        self.extra = {"service": service, "retry_after_s": retry_after_s}
