"""The DFU suffix of boards loaded over USB DFU, against vectors made by Debian's dfu-suffix."""

import pytest

from boards.dfu import append_dfu_suffix, dfu_suffix, has_dfu_suffix

# `printf 'hwgen DFU test vector' > v.bin && dfu-suffix -v 1209 -p 5af0 -a v.bin` (dfu-util
# 0.11), then the last 16 bytes; and an empty file with `-v 1d50 -p 6130 -d 0102`.
FIRMWARE = b"hwgen DFU test vector"
SUFFIX_1209_5AF0 = bytes.fromhex("fffff05a0912000155464410a257ce53")
SUFFIX_EMPTY_1D50_6130_0102 = bytes.fromhex("02013061501d000155464410efdc5de5")


def test_suffix_matches_dfu_suffix_tool():
    assert dfu_suffix(FIRMWARE, 0x1209, 0x5AF0) == SUFFIX_1209_5AF0
    assert dfu_suffix(b"", 0x1D50, 0x6130, device=0x0102) == SUFFIX_EMPTY_1D50_6130_0102


def test_append_and_detect(tmp_path):
    path = tmp_path / "top.bit"
    path.write_bytes(FIRMWARE)
    assert not has_dfu_suffix(FIRMWARE)
    assert append_dfu_suffix(path, 0x1209, 0x5AF0) == len(FIRMWARE) + 16
    data = path.read_bytes()
    assert data == FIRMWARE + SUFFIX_1209_5AF0 and has_dfu_suffix(data)
    # A corrupted byte anywhere before the CRC breaks the CRC.
    assert not has_dfu_suffix(b"X" + data[1:])
    with pytest.raises(ValueError, match=r"top.bit already ends in a DFU suffix$"):
        append_dfu_suffix(path, 0x1209, 0x5AF0)
    assert path.read_bytes() == data


@pytest.mark.parametrize("name, value", [("vendor", -1), ("product", 0x10000),
                                         ("device", 1.0), ("vendor", True)])
def test_bad_ids(name, value):
    ids = {"vendor": 0x1209, "product": 0x5AF0, "device": 0xFFFF, name: value}
    with pytest.raises(ValueError, match=rf"^{name} must be an int in 0..0xFFFF, not {value!r}$"):
        dfu_suffix(b"", ids["vendor"], ids["product"], ids["device"])
