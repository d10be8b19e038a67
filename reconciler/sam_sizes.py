"""The two sizes the SAM self-test compares: an image's, read from its PNG or JPEG header, and a
brush mask's, counted from Label Studio's RLE without decoding it (standard library only, as
the whole reconciler)."""

from __future__ import annotations

import struct

# A brush mask holds 4 values (RGBA) per pixel.
RLE_CHANNELS = 4


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header; None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


# Start-of-frame markers carry the size; C4 (Huffman), C8 (reserved) and CC (arithmetic) do not.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in _JPEG_FRAME_MARKERS and position + 9 <= len(data):
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        position += 2 + length
    return None


class _Bits:
    def __init__(self, data: list[int]):
        self._bits = "".join(f"{byte:08b}" for byte in data)
        self._at = 0

    def read(self, size: int) -> int:
        if self._at + size > len(self._bits):
            raise ValueError("the RLE ends early")
        value = int(self._bits[self._at:self._at + size], 2)
        self._at += size
        return value


def rle_values(rle: list[int]) -> tuple[int, int]:
    """(values, non-zero values) of a Label Studio brush RLE (label_studio_sdk.converter.brush's
    format: a 32-bit count, word size, four run-length sizes, then runs). Raises ValueError when
    the runs do not add up to the count."""
    if not rle or not all(isinstance(byte, int) and 0 <= byte <= 255 for byte in rle):
        raise ValueError("the RLE is not a list of bytes")
    bits = _Bits(rle)
    count = bits.read(32)
    word_size = bits.read(5) + 1
    run_sizes = [bits.read(4) + 1 for _ in range(4)]
    done = non_zero = 0
    while done < count:
        repeated = bits.read(1)
        end = done + 1 + bits.read(run_sizes[bits.read(2)])
        if end > count:
            raise ValueError("the RLE's runs overrun its count")
        if repeated:
            non_zero += (end - done) if bits.read(word_size) else 0
        else:
            non_zero += sum(1 for _ in range(end - done) if bits.read(word_size))
        done = end
    return count, non_zero
