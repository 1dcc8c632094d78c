"""The USB DFU file suffix (DFU 1.1 specification, appendix B), which ``dfu-util`` expects at
the end of a file it loads.

The OrangeCrab's platform adds it with Debian's ``dfu-suffix``, which PyPI does not carry;
:func:`append_dfu_suffix` writes the same 16 bytes as ``dfu-suffix -v VID -p PID -a FILE``.

Layout, little-endian: bcdDevice, idProduct, idVendor, bcdDFU (2 bytes each), the signature
``b"UFD"``, bLength = 16, then dwCRC: the CRC-32 of the whole file up to dwCRC (polynomial
0xEDB88320, initial value 0xFFFFFFFF, no final inversion, so the inverse of zlib's CRC-32).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

__all__ = ["DFU_SUFFIX_LENGTH", "append_dfu_suffix", "dfu_suffix", "has_dfu_suffix"]

DFU_SUFFIX_LENGTH = 16
BCD_DFU = 0x0100  #: the DFU version ``dfu-suffix`` writes
ANY_DEVICE = 0xFFFF  #: bcdDevice wildcard, ``dfu-suffix``'s default


def _check_id(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must be an int in 0..0xFFFF, not {value!r}")


def dfu_suffix(firmware: bytes, vendor: int, product: int, device: int = ANY_DEVICE) -> bytes:
    """The 16-byte DFU suffix for ``firmware`` (the file's bytes without a suffix)."""
    for name, value in (("vendor", vendor), ("product", product), ("device", device)):
        _check_id(name, value)
    head = struct.pack("<HHHH3sB", device, product, vendor, BCD_DFU, b"UFD", DFU_SUFFIX_LENGTH)
    crc = zlib.crc32(head, zlib.crc32(firmware)) ^ 0xFFFFFFFF
    return head + struct.pack("<I", crc)


def has_dfu_suffix(data: bytes) -> bool:
    """Whether ``data`` ends in a DFU suffix: signature, length and CRC all as written above."""
    if len(data) < DFU_SUFFIX_LENGTH or data[-8:-4] != b"UFD" + bytes([DFU_SUFFIX_LENGTH]):
        return False
    crc, = struct.unpack("<I", data[-4:])
    return crc == zlib.crc32(data[:-4]) ^ 0xFFFFFFFF


def append_dfu_suffix(path: str | Path, vendor: int, product: int,
                      device: int = ANY_DEVICE) -> int:
    """Append the DFU suffix to the file at ``path``; return the new size in bytes.

    A file that already ends in a suffix is refused (:class:`ValueError`): a second one would
    be loaded into the FPGA as data."""
    path = Path(path)
    firmware = path.read_bytes()
    if has_dfu_suffix(firmware):
        raise ValueError(f"{path} already ends in a DFU suffix")
    suffix = dfu_suffix(firmware, vendor, product, device)
    with path.open("ab") as file:
        file.write(suffix)
    return len(firmware) + len(suffix)
