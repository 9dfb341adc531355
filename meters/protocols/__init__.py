"""Meter protocol decoders: bytes in, typed frames out. No I/O, no storage."""


class FrameError(ValueError):
    """A frame that cannot be decoded; `reason` is short and stable enough to match on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
