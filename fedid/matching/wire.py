"""Byte-level codec of the matching messages: length-prefixed blobs, points, big ints.

Every read checks the remaining length, so truncated input raises
:class:`~fedid.errors.ProtocolError` instead of returning a short value.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from fedid.errors import ProtocolError

__all__ = ["MAX_ITEMS", "POINT_BYTES", "Reader", "U32Array", "Writer"]

POINT_BYTES = 32
# Largest list a message may carry: 2^25 points (1 GiB) or ciphertexts; a province has a few
# million students and guardians. Receivers check tighter, signed sizes before any work.
MAX_ITEMS = 1 << 25
U32Array = npt.NDArray[np.uint32]


class Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self.parts.append(struct.pack("<B", v))

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack("<I", v))

    def blob(self, b: bytes) -> None:
        self.u32(len(b))
        self.parts.append(b)

    def text(self, s: str) -> None:
        self.blob(s.encode())

    def points(self, pts: bytes) -> None:
        if len(pts) % POINT_BYTES:
            raise ProtocolError(
                f"point buffer must be a multiple of {POINT_BYTES}. Got {len(pts)}.")
        self.blob(pts)

    def ints(self, values: tuple[int, ...], width: int) -> None:
        self.u32(width)
        self.u32(len(values))
        try:
            self.parts.append(b"".join(v.to_bytes(width, "big") for v in values))
        except OverflowError as exc:
            raise ProtocolError(f"integer does not fit the width of {width} bytes") from exc

    def u32s(self, arr: U32Array) -> None:
        self.blob(np.ascontiguousarray(arr, dtype="<u4").tobytes())


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, k: int) -> bytes:
        if k < 0 or self.pos + k > len(self.data):
            raise ProtocolError(
                f"message truncated: needed {k} bytes at offset {self.pos}, "
                f"{len(self.data) - self.pos} left"
            )
        out = bytes(self.data[self.pos : self.pos + k])
        self.pos += k
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def blob(self) -> bytes:
        return self.take(self.u32())

    def text(self) -> str:
        raw = self.blob()
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("text field is not valid UTF-8") from exc

    def points(self) -> bytes:
        size = self.u32()
        if size > MAX_ITEMS * POINT_BYTES:
            raise ProtocolError(f"point list must hold <= {MAX_ITEMS} points. "
                                f"Got {size // POINT_BYTES}.")
        raw = self.take(size)
        if len(raw) % POINT_BYTES:
            raise ProtocolError(
                f"point buffer must be a multiple of {POINT_BYTES}. Got {len(raw)}.")
        return raw

    def ints(self) -> tuple[tuple[int, ...], int]:
        width = self.u32()
        count = self.u32()
        if width == 0 or width > 4096:
            raise ProtocolError(f"integer width must be 1-4096 bytes. Got {width}.")
        if count > MAX_ITEMS:
            raise ProtocolError(f"integer list must hold <= {MAX_ITEMS} values. Got {count}.")
        raw = self.take(width * count)
        return (
            tuple(int.from_bytes(raw[i * width : (i + 1) * width], "big") for i in range(count)),
            width,
        )

    def u32s(self) -> U32Array:
        raw = self.blob()
        if len(raw) % 4:
            raise ProtocolError(f"u32 array length must be a multiple of 4. Got {len(raw)}.")
        return np.frombuffer(raw, dtype="<u4").astype(np.uint32)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} trailing bytes after the message")
