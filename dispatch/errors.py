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


class CertificationNotPending(Conflict):
    """The certification has been decided: its photo can no longer change."""

    slug = "certification-not-pending"
    fields = ("certification_status",)

    def __init__(self, certification_status: str) -> None:
        super().__init__(f"the certification is {certification_status}, not pending")
        self.extra = {"certification_status": certification_status}


class PhotoUnsupportedType(InvalidInput):
    """A photo is sent as image/jpeg, image/png or image/webp."""

    slug = "photo-unsupported-type"


class PhotoTooLarge(InvalidInput):
    """The photo is larger than the limit."""

    slug = "photo-too-large"
    fields = ("max_bytes",)

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"a photo is at most {max_bytes} bytes")
        self.extra = {"max_bytes": max_bytes}


class PhotoNotAnImage(InvalidInput):
    """The body is not a readable image of the type it was sent as."""

    slug = "photo-not-an-image"


class PhotoTypeMismatch(InvalidInput):
    """The image is of another type than the one it was sent as."""

    slug = "photo-type-mismatch"
    fields = ("declared", "detected")

    def __init__(self, declared: str, detected: str) -> None:
        super().__init__(f"sent as {declared} but the image is {detected}")
        self.extra = {"declared": declared, "detected": detected}


class PhotoBadDimensions(InvalidInput):
    """The image is too small to read or too large to be a photo."""

    slug = "photo-bad-dimensions"
    fields = ("width", "height")

    def __init__(self, width: int | None, height: int | None) -> None:
        """None: too many pixels for the decoder even to say how many."""
        super().__init__(f"a photo of {width}×{height} pixels is out of range")
        self.extra = {"width": width, "height": height}


class UnknownPhotoRefs(InvalidInput):
    """A report names photos that were not uploaded for this order."""

    slug = "unknown-photo-refs"
    fields = ("unknown_refs",)

    def __init__(self, unknown_refs: list[str]) -> None:
        super().__init__(f"no photo uploaded for this order as {', '.join(unknown_refs)}")
        self.extra = {"unknown_refs": unknown_refs}
