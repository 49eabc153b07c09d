"""Hardware targets: one TOML file per board or accelerator, parsed and validated once into frozen objects.

Nothing downstream reads raw TOML dicts or re-checks values: a ``Target`` that exists is valid.

File schema (see ``targets/zcu102.toml`` for a commented example)::

    description = "..."            # one line
    clock_mhz = 300                # accelerator clock, MHz
    source_clock_mhz = "..."       # where the number comes from, or "assumption: ..."

    [device]                       # kind = "fpga" (default) or "asic" (reference accelerators)
    kind, part, dsp_kind, lut, ff, dsp, bram36, uram      # fpga
    kind, part, sram_kib                                   # asic: total on-chip SRAM, KiB
    [caps]                         # fpga only: fraction of each resource a design may use, 0 < cap <= 1
    lut, ff, dsp, bram36, uram
    [memory]
    kind, bandwidth_gbps | bandwidth_bytes_per_cycle, channels, controller ("hard" | "soft")
    [accelerator]
    rows, cols, dataflow (os|ws|is), pe (dsp_packed|lut|bitfusion|int8), weight_bits, act_bits, vector_lanes
    [accelerator.buffers]          # each of ifmap/filter/ofmap: {memory = "bram36"|"uram"|"sram", kib = N | share = f}

Every number needs a source: the table's ``source`` covers all its numbers, ``source_<key>`` overrides
it for one key. A source is a citation (datasheet table, paper, repository file) or a string starting
with ``assumption:`` that says why the number was chosen.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sim.errors import InputError

if TYPE_CHECKING:
    from sim.resources import Resources

__all__ = [
    "SUPPORTED_BITS",
    "Accelerator",
    "Buffers",
    "Caps",
    "Device",
    "Memory",
    "Target",
    "list_targets",
    "load_target",
]

Dataflow = Literal["os", "ws", "is"]
PeKind = Literal["dsp_packed", "lut", "bitfusion", "int8"]
DeviceKind = Literal["fpga", "asic"]
BufferMemory = Literal["bram36", "uram", "sram"]

DATAFLOWS: tuple[str, ...] = ("os", "ws", "is")
PE_KINDS: tuple[str, ...] = ("dsp_packed", "lut", "bitfusion", "int8")
DSP_KINDS: tuple[str, ...] = ("dsp48e1", "dsp48e2", "dsp58")
MEMORY_KINDS: tuple[str, ...] = ("ddr3", "ddr4", "lpddr4", "hbm2")
#: Bit widths a layer may use (DESIGN.md, quantization reference facts); 7 is deliberately absent.
SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)

#: Capacity of one BRAM36 (36 Kbit, UG573) and one URAM (4K x 72 = 288 Kbit, UG573), in bytes.
BRAM36_BYTES = 36 * 1024 // 8
URAM_BYTES = 4096 * 72 // 8


@dataclass(frozen=True)
class Device:
    """The programmable device's resources (vendor table counts).

    For ``kind == "asic"`` (a reference accelerator with no FPGA) the LUT/FF/DSP/BRAM36/URAM counts are 0
    and ``sram_bytes`` is the chip's on-chip SRAM; ``sim.estimate_resources`` then reports what the same
    array would take on an FPGA and judges ``fits`` on SRAM only.
    """

    part: str
    lut: int
    ff: int
    dsp: int
    bram36: int
    uram: int
    kind: DeviceKind = "fpga"
    dsp_kind: str = "dsp48e2"
    sram_bytes: int = 0


@dataclass(frozen=True)
class Caps:
    """Fraction of each device resource a design may use (0 < cap <= 1)."""

    lut: float
    ff: float
    dsp: float
    bram36: float
    uram: float


@dataclass(frozen=True)
class Memory:
    """Off-chip memory: peak bandwidth in GB/s (1e9 bytes per second).

    ``controller`` is ``"hard"`` when the memory controller is a hardened block (Zynq PS DDR, Versal DDRMC,
    Alveo HBM) and ``"soft"`` when it is built in the fabric (a MIG per DDR channel on Alveo U250).
    """

    kind: str
    bandwidth_gbps: float
    channels: int = 1
    controller: Literal["hard", "soft"] = "hard"


@dataclass(frozen=True)
class Buffers:
    """On-chip SRAM for each operand, in bytes (double-buffered halves included), and what it is built from."""

    ifmap_bytes: int
    filter_bytes: int
    ofmap_bytes: int
    ifmap_memory: BufferMemory = "bram36"
    filter_memory: BufferMemory = "bram36"
    ofmap_memory: BufferMemory = "bram36"

    @property
    def total_bytes(self) -> int:
        return self.ifmap_bytes + self.filter_bytes + self.ofmap_bytes


@dataclass(frozen=True)
class Accelerator:
    """The systolic array laid on the device."""

    rows: int
    cols: int
    dataflow: Dataflow
    pe: PeKind
    weight_bits: tuple[int, ...]
    act_bits: tuple[int, ...]
    buffers: Buffers
    vector_lanes: int


@dataclass(frozen=True)
class Target:
    """A board (or reference accelerator) with the accelerator on it.

    ``sources`` maps a dotted key (``device.dsp``) to where its number comes from, or to a string
    starting with ``assumption:`` for numbers that are ours.
    """

    name: str
    description: str
    path: Path
    clock_mhz: float
    device: Device
    caps: Caps
    memory: Memory
    accelerator: Accelerator
    sources: tuple[tuple[str, str], ...]

    @property
    def bytes_per_cycle(self) -> float:
        """Off-chip bytes one accelerator clock cycle can move at peak bandwidth."""
        return self.memory.bandwidth_gbps * 1e9 / (self.clock_mhz * 1e6)

    @property
    def is_asic(self) -> bool:
        return self.device.kind == "asic"

    def source(self, key: str) -> str:
        """Where the number at dotted ``key`` (``memory.bandwidth_gbps``) comes from."""
        for name, text in self.sources:
            if name == key:
                return text
        raise KeyError(key)

    def supports(self, weight_bits: int, act_bits: int) -> bool:
        """Whether the array runs operands of these widths (bits)."""
        return weight_bits in self.accelerator.weight_bits and act_bits in self.accelerator.act_bits

    def resources(self, weight_bits: int | None = None, act_bits: int | None = None) -> Resources:
        """``sim.estimate_resources(self, ...)``: DSP/LUT/FF/BRAM36/URAM of this design."""
        from sim.resources import estimate_resources

        return estimate_resources(self, weight_bits, act_bits)

    def with_array(self, rows: int | None = None, cols: int | None = None, dataflow: str | None = None) -> Target:
        """A copy with another array shape or dataflow (CLI ``--rows/--cols/--dataflow``).

        Values are checked (positive sizes, a known dataflow) but the fit is not: an override that exceeds
        the device reports ``fits == False`` in its resources instead of raising. Buffers keep their bytes.
        """
        acc = self.accelerator
        new_rows = acc.rows if rows is None else _positive_override(rows, "rows")
        new_cols = acc.cols if cols is None else _positive_override(cols, "cols")
        new_dataflow = acc.dataflow if dataflow is None else dataflow
        if new_dataflow not in DATAFLOWS:
            raise InputError(f"--dataflow: unknown dataflow {new_dataflow!r}; expected one of {', '.join(DATAFLOWS)}")
        new_acc = dataclasses.replace(acc, rows=new_rows, cols=new_cols, dataflow=new_dataflow)
        return dataclasses.replace(self, accelerator=new_acc)


def _positive_override(value: int, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"--{flag}: must be a positive integer, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------
# Loading


def list_targets() -> list[str]:
    """Names of the shipped targets, sorted."""
    root = importlib.resources.files("targets")
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_target(name_or_path: str | Path) -> Target:
    """Load and validate a shipped target by name (``zcu102``) or a TOML file by path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        return _load_file(Path(name_or_path))
    if text not in list_targets():
        raise InputError(f"unknown target {text!r}; known targets: {', '.join(list_targets())}")
    return _load_shipped(text)


@functools.cache
def _load_shipped(name: str) -> Target:
    return _load_file(Path(str(importlib.resources.files("targets") / f"{name}.toml")))


def _load_file(path: Path) -> Target:
    if not path.is_file():
        raise InputError(f"{path}: no such target file")
    try:
        raw_text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: byte {exc.start}: not UTF-8 text (TOML files are UTF-8)") from None
    try:
        raw = tomllib.loads(raw_text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(_decode_error_message(path, raw_text, exc)) from None
    target = _Parser(path, raw).target()
    _check_fit(target)
    return target


_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")
_HEADER_LINE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _decode_error_message(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """One line naming the file, the key and the reason; tomllib's own message lacks the key."""
    reason = str(exc).splitlines()[0]
    if any(word in reason for word in ("overwrite", "twice", "Duplicate")):
        duplicate = _find_duplicate_key(text)
        if duplicate is not None:
            key, line = duplicate
            return f"{path}: {key}: duplicate key (line {line})"
        return f"{path}: duplicate key ({reason})"
    # TOMLDecodeError has no lineno attribute before Python 3.14; its message says "(at line N, column M)"
    found = re.search(r"at line (\d+)", reason)
    line_no = int(found.group(1)) if found else None
    key = "?"
    if line_no:
        lines = text.splitlines()
        if 0 < line_no <= len(lines):
            match = _KEY_LINE.match(lines[line_no - 1])
            key = match.group(1).strip() if match else f"line {line_no}"
            headers = [h.group(1).replace(" ", "") for h in map(_HEADER_LINE.match, lines[: line_no - 1]) if h]
            if match and headers:
                key = f"{headers[-1]}.{key}"
    return f"{path}: {key}: malformed TOML ({reason})"


def _strip_comment(line: str) -> str:
    """The line without its ``# comment``, keeping ``#`` inside quoted strings."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index].strip()
    return line.strip()


def _find_duplicate_key(text: str) -> tuple[str, int] | None:
    """(dotted key, line) of the first key or table defined twice; a line scan, enough for target files."""
    table = ""
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = _strip_comment(line)
        header = _HEADER_LINE.match(stripped)
        if header and not stripped.startswith("[["):
            table = header.group(1).replace(" ", "")
            if ("[" + table) in seen:
                return table, number
            seen.add("[" + table)
            continue
        match = _KEY_LINE.match(stripped)
        if match:
            key = match.group(1).strip().strip("\"'")
            full = f"{table}.{key}" if table else key
            if full in seen:
                return full, number
            seen.add(full)
            inline = re.match(r"^[^=]+=\s*\{(.*)\}\s*$", stripped)
            if inline:
                names = [part.split("=", 1)[0].strip() for part in inline.group(1).split(",") if "=" in part]
                for name in names:
                    if names.count(name) > 1:
                        return f"{full}.{name}", number
    return None


class _Parser:
    """Turns the raw TOML dict into a ``Target``, raising ``InputError`` on the first problem."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.raw = raw
        self.sources: dict[str, str] = {}

    def fail(self, key: str, reason: str) -> InputError:
        return InputError(f"{self.path}: {key}: {reason}")

    # -- generic checks --------------------------------------------------------------------------------

    def table(self, parent: dict[str, Any], name: str, prefix: str, *, required: bool = True) -> dict[str, Any]:
        key = f"{prefix}{name}"
        if name not in parent:
            if required:
                raise self.fail(key, "missing table")
            return {}
        value = parent[name]
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {_type_name(value)}")
        return value

    def check_keys(self, table: dict[str, Any], prefix: str, allowed: set[str], required: set[str]) -> None:
        numeric = {k for k in allowed if not k.startswith("source")}
        for key in table:
            if key in allowed or key == "source":
                continue
            if key.startswith("source_") and key.removeprefix("source_") in numeric:
                continue
            raise self.fail(f"{prefix}{key}", f"unknown key; expected one of {', '.join(sorted(allowed))}")
        for key in sorted(required):
            if key not in table:
                raise self.fail(f"{prefix}{key}", "missing key")

    def record_source(self, table: dict[str, Any], prefix: str, key: str) -> None:
        """Every number must have a source: ``source_<key>`` or the table's ``source``."""
        for name in (f"source_{key}", "source"):
            if name in table:
                text = table[name]
                if not isinstance(text, str):
                    raise self.fail(f"{prefix}{name}", f"expected a string, got {_type_name(text)}")
                if not text.strip():
                    raise self.fail(f"{prefix}{name}", "empty source")
                self.sources[f"{prefix}{key}"] = text.strip()
                return
        raise self.fail(f"{prefix}{key}", f'missing source (add `source_{key} = "..."` or a table `source`)')

    def string(self, table: dict[str, Any], prefix: str, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = table[key]
        if not isinstance(value, str):
            raise self.fail(f"{prefix}{key}", f"expected a string, got {_type_name(value)}")
        if choices is not None and value not in choices:
            raise self.fail(f"{prefix}{key}", f"unknown value {value!r}; expected one of {', '.join(choices)}")
        if not value.strip():
            raise self.fail(f"{prefix}{key}", "empty string")
        return value

    def integer(self, table: dict[str, Any], prefix: str, key: str, *, minimum: int = 1) -> int:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{prefix}{key}", f"expected an integer, got {_type_name(value)}")
        if value < minimum:
            what = "positive" if minimum == 1 else f">= {minimum}"
            raise self.fail(f"{prefix}{key}", f"must be {what}, got {value}")
        self.record_source(table, prefix, key)
        return value

    def number(self, table: dict[str, Any], prefix: str, key: str, *, maximum: float | None = None) -> float:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{prefix}{key}", f"expected a number, got {_type_name(value)}")
        if not math.isfinite(value) or value <= 0:
            raise self.fail(f"{prefix}{key}", f"must be positive, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(f"{prefix}{key}", f"must be at most {maximum}, got {value}")
        self.record_source(table, prefix, key)
        return float(value)

    def bits(self, table: dict[str, Any], prefix: str, key: str) -> tuple[int, ...]:
        value = table[key]
        if not isinstance(value, list) or not value:
            raise self.fail(f"{prefix}{key}", f"expected a non-empty list of bit widths, got {_type_name(value)}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise self.fail(f"{prefix}{key}", f"expected integers, got {_type_name(item)}")
            if item not in SUPPORTED_BITS:
                raise self.fail(
                    f"{prefix}{key}",
                    f"unsupported bit width {item}; supported: {', '.join(map(str, SUPPORTED_BITS))}",
                )
        if len(set(value)) != len(value):
            raise self.fail(f"{prefix}{key}", "bit width listed twice")
        self.record_source(table, prefix, key)
        return tuple(sorted(value))

    # -- sections --------------------------------------------------------------------------------------

    def target(self) -> Target:
        raw = self.raw
        self.check_keys(
            raw,
            "",
            {"description", "clock_mhz", "device", "caps", "memory", "accelerator"},
            {"description", "clock_mhz", "device", "memory", "accelerator"},
        )
        description = self.string(raw, "", "description")
        clock_mhz = self.number(raw, "", "clock_mhz")
        device = self.device()
        caps = self.caps(device)
        memory = self.memory(clock_mhz)
        accelerator = self.accelerator(device)
        return Target(
            name=self.path.name.removesuffix(".toml"),
            description=description,
            path=self.path,
            clock_mhz=clock_mhz,
            device=device,
            caps=caps,
            memory=memory,
            accelerator=accelerator,
            sources=tuple(sorted(self.sources.items())),
        )

    def device(self) -> Device:
        prefix = "device."
        table = self.table(self.raw, "device", "")
        kind = table.get("kind", "fpga")
        if kind not in ("fpga", "asic"):
            raise self.fail("device.kind", f"unknown value {kind!r}; expected one of fpga, asic")
        if kind == "asic":
            self.check_keys(table, prefix, {"kind", "part", "sram_kib"}, {"part", "sram_kib"})
            sram_kib = self.number(table, prefix, "sram_kib")
            return Device(
                part=self.string(table, prefix, "part"),
                lut=0,
                ff=0,
                dsp=0,
                bram36=0,
                uram=0,
                kind="asic",
                sram_bytes=round(sram_kib * 1024),
            )
        counts = {"lut", "ff", "dsp", "bram36", "uram"}
        self.check_keys(table, prefix, {"kind", "part", "dsp_kind", *counts}, {"part", *counts})
        return Device(
            part=self.string(table, prefix, "part"),
            lut=self.integer(table, prefix, "lut"),
            ff=self.integer(table, prefix, "ff"),
            dsp=self.integer(table, prefix, "dsp", minimum=0),
            bram36=self.integer(table, prefix, "bram36"),
            uram=self.integer(table, prefix, "uram", minimum=0),
            kind="fpga",
            dsp_kind=self.string(table, prefix, "dsp_kind", DSP_KINDS) if "dsp_kind" in table else "dsp48e2",
        )

    def caps(self, device: Device) -> Caps:
        prefix = "caps."
        names = ("lut", "ff", "dsp", "bram36", "uram")
        if device.kind == "asic":
            if "caps" in self.raw:
                raise self.fail("caps", "an asic device has no FPGA caps; remove the table")
            return Caps(1.0, 1.0, 1.0, 1.0, 1.0)
        table = self.table(self.raw, "caps", "")
        self.check_keys(table, prefix, set(names), set(names))
        values = [self.number(table, prefix, name, maximum=1.0) for name in names]
        return Caps(*values)

    def memory(self, clock_mhz: float) -> Memory:
        prefix = "memory."
        table = self.table(self.raw, "memory", "")
        allowed = {"kind", "bandwidth_gbps", "bandwidth_bytes_per_cycle", "channels", "controller"}
        self.check_keys(table, prefix, allowed, {"kind"})
        kind = self.string(table, prefix, "kind", MEMORY_KINDS)
        has_gbps, has_bpc = "bandwidth_gbps" in table, "bandwidth_bytes_per_cycle" in table
        if has_gbps == has_bpc:
            raise self.fail(
                "memory.bandwidth_gbps",
                "missing key" if not has_gbps else "give bandwidth_gbps or bandwidth_bytes_per_cycle, not both",
            )
        if has_gbps:
            bandwidth = self.number(table, prefix, "bandwidth_gbps")
        else:
            bandwidth = self.number(table, prefix, "bandwidth_bytes_per_cycle") * clock_mhz * 1e6 / 1e9
            self.sources["memory.bandwidth_gbps"] = self.sources["memory.bandwidth_bytes_per_cycle"]
        channels = self.integer(table, prefix, "channels") if "channels" in table else 1
        controller = self.string(table, prefix, "controller", ("hard", "soft")) if "controller" in table else "hard"
        return Memory(kind=kind, bandwidth_gbps=bandwidth, channels=channels, controller=controller)

    def accelerator(self, device: Device) -> Accelerator:
        prefix = "accelerator."
        table = self.table(self.raw, "accelerator", "")
        allowed = {"rows", "cols", "dataflow", "pe", "weight_bits", "act_bits", "vector_lanes", "buffers"}
        self.check_keys(table, prefix, allowed, allowed)
        pe = self.string(table, prefix, "pe", PE_KINDS)
        if pe in ("dsp_packed", "int8") and device.kind == "fpga" and device.dsp == 0:
            raise self.fail("accelerator.pe", f"{pe} PEs need DSP slices and the device has none")
        if pe == "dsp_packed" and device.dsp_kind == "dsp48e1":
            # WP486's two-products-per-DSP scheme needs the 27-bit pre-adder of DSP48E2 (DSP48E1 has 25 bits)
            raise self.fail("accelerator.pe", "dsp_packed PEs need DSP48E2 or DSP58 slices (device.dsp_kind = dsp48e1)")
        return Accelerator(
            rows=self.integer(table, prefix, "rows"),
            cols=self.integer(table, prefix, "cols"),
            dataflow=self.string(table, prefix, "dataflow", DATAFLOWS),  # type: ignore[arg-type]
            pe=pe,  # type: ignore[arg-type]
            weight_bits=self.bits(table, prefix, "weight_bits"),
            act_bits=self.bits(table, prefix, "act_bits"),
            buffers=self.buffers(table, device),
            vector_lanes=self.integer(table, prefix, "vector_lanes"),
        )

    def buffers(self, accelerator: dict[str, Any], device: Device) -> Buffers:
        prefix = "accelerator.buffers."
        table = self.table(accelerator, "buffers", "accelerator.")
        roles = ("ifmap", "filter", "ofmap")
        self.check_keys(table, prefix, set(roles), set(roles))
        sizes: dict[str, int] = {}
        memories: dict[str, str] = {}
        for role in roles:
            key = f"{prefix}{role}"
            spec = table[role]
            if not isinstance(spec, dict):
                example = '{ memory = "bram36", kib = 64 }'
                raise self.fail(key, f"expected a table like {example}, got {_type_name(spec)}")
            for name in spec:
                if name not in ("memory", "kib", "share"):
                    raise self.fail(f"{key}.{name}", "unknown key; expected one of kib, memory, share")
            if "memory" not in spec:
                raise self.fail(f"{key}.memory", "missing key")
            choices = ("sram",) if device.kind == "asic" else ("bram36", "uram")
            memory = self.string(spec, f"{key}.", "memory", choices)
            if memory == "uram" and device.uram == 0:
                raise self.fail(f"{key}.memory", f"the device ({device.part}) has no URAM")
            if ("kib" in spec) == ("share" in spec):
                raise self.fail(f"{key}.kib", "give exactly one of kib (a size) or share (a fraction of the device)")
            self.record_source(table, prefix, role)
            if "kib" in spec:
                kib = spec["kib"]
                if isinstance(kib, bool) or not isinstance(kib, int | float):
                    raise self.fail(f"{key}.kib", f"expected a number, got {_type_name(kib)}")
                if not math.isfinite(kib) or kib <= 0:
                    raise self.fail(f"{key}.kib", f"must be positive, got {kib}")
                sizes[role] = round(kib * 1024)
            else:
                if device.kind == "asic":
                    raise self.fail(f"{key}.share", "an asic device has no BRAM/URAM to share; give kib")
                share = spec["share"]
                if isinstance(share, bool) or not isinstance(share, int | float):
                    raise self.fail(f"{key}.share", f"expected a number, got {_type_name(share)}")
                if not 0 < share <= 1:
                    raise self.fail(f"{key}.share", f"must be in (0, 1], got {share}")
                count = device.uram if memory == "uram" else device.bram36
                primitives = math.floor(share * count)
                if primitives == 0:
                    raise self.fail(f"{key}.share", f"{share} of {count} {memory} is less than one block")
                sizes[role] = primitives * (URAM_BYTES if memory == "uram" else BRAM36_BYTES)
            memories[role] = memory
        return Buffers(
            ifmap_bytes=sizes["ifmap"],
            filter_bytes=sizes["filter"],
            ofmap_bytes=sizes["ofmap"],
            ifmap_memory=memories["ifmap"],  # type: ignore[arg-type]
            filter_memory=memories["filter"],  # type: ignore[arg-type]
            ofmap_memory=memories["ofmap"],  # type: ignore[arg-type]
        )


#: Which file key a resource overrun is blamed on, by the component that uses most of it.
_COMPONENT_KEYS = {
    "array": "accelerator.rows",
    "accumulators": "accelerator.rows",
    "buffers": "accelerator.buffers",
    "vector_unit": "accelerator.vector_lanes",
    "memory_interface": "memory",
    "control": "accelerator",
}


def _check_fit(target: Target) -> None:
    """A file whose accelerator needs more than the whole device (not just its caps) is impossible."""
    from sim.resources import RESOURCE_NAMES, estimate_resources

    resources = estimate_resources(target)
    if target.is_asic:
        buffers = target.accelerator.buffers.total_bytes
        if buffers > target.device.sram_bytes:
            raise InputError(
                f"{target.path}: accelerator.buffers: buffers take {buffers / 1024:g} KiB, "
                f"more than the chip's {target.device.sram_bytes / 1024:g} KiB of SRAM (device.sram_kib)"
            )
        return
    for name in RESOURCE_NAMES:
        need = getattr(resources, name)
        have = getattr(target.device, name)
        if need > have:
            worst = max(resources.breakdown, key=lambda part: getattr(part, name))
            acc = target.accelerator
            raise InputError(
                f"{target.path}: {_COMPONENT_KEYS[worst.component]}: the {acc.rows}x{acc.cols} {acc.pe} accelerator "
                f"needs {need:,} {name.upper()} ({worst.component}: {getattr(worst, name):,}), "
                f"the device {target.device.part} has {have:,}"
            )


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
