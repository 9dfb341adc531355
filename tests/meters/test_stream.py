from meters.protocols.stream import MAX_FRAME, FrameReassembler, StreamFrame

CJT = bytes.fromhex("68 10 01 00 00 05 08 00 00 01 03 1F 90 00 39 16")
MBUS = bytes.fromhex(
    "68 20 20 68 08 FD 72 78 56 34 12 93 15 33 03 2A 00 00 00 0C 14 27 04 85 02 04 6D 32 37 1F 15 02 FD 17 00 00 89 16"
)
SHORT = bytes.fromhex("10 5B FE 59 16")


def test_frame_split_across_reads_is_reassembled():
    stream = FrameReassembler()
    data = b"\xfe\xfe" + MBUS
    frames = [f for i in range(len(data)) for f in stream.feed(data[i : i + 1])]
    assert frames == [StreamFrame("mbus", MBUS)]
    assert (stream.garbage_bytes, stream.buffered) == (0, 0)


def test_several_frames_in_one_read_come_out_in_order():
    stream = FrameReassembler()
    frames = stream.feed(b"\xfe\xfe\xfe" + CJT + MBUS + SHORT + b"\xe5" + CJT)
    assert [f.protocol for f in frames] == ["cjt188", "mbus", "mbus", "mbus", "cjt188"]
    assert frames[0].data == CJT and frames[2].data == SHORT and frames[3].data == b"\xe5"


def test_garbage_between_frames_is_skipped_and_counted():
    stream = FrameReassembler()
    garbage = b"\x00\x68\x12\x16\x99"  # contains a false start byte
    assert stream.feed(CJT + garbage + MBUS) == [StreamFrame("cjt188", CJT), StreamFrame("mbus", MBUS)]
    assert stream.garbage_bytes == len(garbage)


def test_frame_with_bad_checksum_is_garbage():
    stream = FrameReassembler()
    broken = CJT[:-2] + b"\x00\x16"
    assert stream.feed(broken + CJT) == [StreamFrame("cjt188", CJT)]
    assert stream.garbage_bytes == len(broken)


def test_buffer_stays_bounded_on_endless_garbage():
    stream = FrameReassembler()
    chunk = b"\x68" + bytes(range(0x20, 0x60)) * 4  # false starts; no ack or short-frame byte
    for _ in range(200):
        assert stream.feed(chunk) == []
        assert stream.buffered <= MAX_FRAME
    assert stream.feed(CJT) == [StreamFrame("cjt188", CJT)]
    assert stream.buffered == 0
    assert stream.garbage_bytes == 200 * len(chunk)


def test_partial_header_waits_for_more_bytes():
    stream = FrameReassembler()
    assert stream.feed(MBUS[:3]) == []
    assert stream.buffered == 3
    assert stream.feed(MBUS[3:]) == [StreamFrame("mbus", MBUS)]
