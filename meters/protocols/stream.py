"""Reassemble CJ/T 188 and wired M-Bus frames from a TCP byte stream.

Frames are checked for framing only (length, stop byte, checksum); decoding is the caller's.
Anything that is not a frame is skipped and counted. The buffer never holds more than one
incomplete frame, so it stays under `MAX_FRAME` bytes whatever arrives.
"""

from typing import Literal, NamedTuple

from meters.protocols import cjt188, mbus

MAX_FRAME = cjt188.HEADER_LEN + 255 + 2  # the larger of the two: CJ/T 188 with L = 255
_SHORT_FRAME_LEN = 5  # 10 C A CS 16


class StreamFrame(NamedTuple):  # a tuple: one is built per frame on the ingestion hot path
    protocol: Literal["cjt188", "mbus"]
    data: bytes  # the frame, FE preamble stripped


class FrameReassembler:
    def __init__(self, profile: cjt188.VendorProfile = cjt188.STANDARD) -> None:
        self._buffer = bytearray()
        self._profile = profile
        self.garbage_bytes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[StreamFrame]:
        self._buffer += chunk
        frames: list[StreamFrame] = []
        pos = 0
        buf = bytes(self._buffer)  # one copy to scan: slices of it are the frames' bytes
        end = len(buf)
        summed_from = cjt188.HEADER_LEN if self._profile.checksum == "data" else 0
        while pos < end:
            byte = buf[pos]
            if byte == cjt188.PREAMBLE:
                pos += 1
                continue
            # Nearly every frame: a complete CJ/T 188 frame whose header is no M-Bus one
            # (`_frame_at` would try M-Bus first), checked here without the general search.
            if (byte == cjt188.START and end - pos >= cjt188.HEADER_LEN
                    and (buf[pos + 3] != mbus.LONG_START or buf[pos + 1] != buf[pos + 2])):
                stop = pos + cjt188.HEADER_LEN + buf[pos + 10] + 2
                if (stop <= end and buf[stop - 1] == cjt188.STOP
                        and sum(buf[pos + summed_from : stop - 2]) & 0xFF == buf[stop - 2]):
                    frames.append(StreamFrame("cjt188", buf[pos:stop]))
                    pos = stop
                    continue
            if byte == mbus.ACK:
                frames.append(StreamFrame("mbus", bytes([byte])))
                pos += 1
                continue
            found, waiting = self._frame_at(buf, pos)
            if found is not None:
                frames.append(found)
                pos += len(found.data)
            elif waiting:
                later = self._next_complete_frame(buf, pos + 1)
                if later is None:
                    break
                self.garbage_bytes += later - pos
                pos = later
            else:
                self.garbage_bytes += 1
                pos += 1
        del self._buffer[:pos]
        return frames

    def _next_complete_frame(self, buf: bytes, start: int) -> int | None:
        """Where a complete, checksummed frame begins after a false start, if one does.

        Without this a stray 68 (DTU heartbeats carry them) would hold back the frames behind
        it until enough bytes arrive to rule it out.
        """
        for pos in range(start, len(buf)):
            if buf[pos] in (cjt188.START, mbus.SHORT_START) and self._frame_at(buf, pos)[0] is not None:
                return pos
        return None

    def _frame_at(self, buf: bytes, pos: int) -> tuple[StreamFrame | None, bool]:
        """(frame, False) when one starts at pos; (None, True) if more bytes could make one."""
        byte, waiting = buf[pos], False
        if byte == mbus.SHORT_START:
            if len(buf) - pos < _SHORT_FRAME_LEN:
                return None, True
            frame = bytes(buf[pos : pos + _SHORT_FRAME_LEN])
            if frame[4] == mbus.STOP and (frame[1] + frame[2]) & 0xFF == frame[3]:
                return StreamFrame("mbus", frame), False
            return None, False
        if byte != cjt188.START:
            return None, False
        # A 68 may open either protocol; M-Bus first since its header is self-checking.
        for protocol, span in (("mbus", _mbus_span(buf, pos)), ("cjt188", cjt188.frame_span(buf, pos))):
            if span == 0:
                continue
            if span is None or len(buf) - pos < span:
                waiting = True
                continue
            frame = bytes(buf[pos : pos + span])
            if frame[-1] == cjt188.STOP and sum(self._summed(protocol, frame)) & 0xFF == frame[-2]:
                return StreamFrame(protocol, frame), False
        return None, waiting

    def _summed(self, protocol: str, frame: bytes) -> bytes:
        if protocol == "mbus":
            return frame[4:-2]
        if self._profile.checksum == "data":
            return frame[cjt188.HEADER_LEN : -2]
        return frame[:-2]


def _mbus_span(buf: bytes, pos: int) -> int | None:
    span = mbus.long_frame_span(buf, pos)
    if span is None:
        return None
    if buf[pos + 3] != mbus.LONG_START or buf[pos + 1] != buf[pos + 2]:
        return 0  # not an M-Bus header
    return span
