"""Hardware targets as frozen objects: a board (or reference accelerator) and the systolic array laid on it.

Target files are read and validated once by ``sim.target_file`` (its docstring has the file schema); nothing
downstream reads raw TOML dicts or re-checks values: a ``Target`` that exists is valid. This module holds the
names every other module derives its lists from (``Literal`` types) and the sizes of FPGA memory blocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from sim.attention import ATTENTION_KINDS, AttentionEngine
from sim.errors import InputError
from sim.nonlinear import Nonlinear
from sim.patchwise import Patchwise
from sim.workload import MixtureOfExperts

__all__ = [
    "BRAM36_BITS",
    "BRAM36_BYTES",
    "DATAFLOWS",
    "MAX_ARRAY_SIDE",
    "PER_LAYER",
    "PE_KINDS",
    "RESOURCE_NAMES",
    "SUPPORTED_BITS",
    "URAM_BITS",
    "URAM_BYTES",
    "Accelerator",
    "Buffers",
    "Caps",
    "Device",
    "Engine",
    "Memory",
    "Published",
    "PublishedResult",
    "Target",
]

Dataflow = Literal["os", "ws", "is"]
PeKind = Literal["dsp_packed", "lut", "bitfusion", "int8"]
DeviceKind = Literal["fpga", "asic"]
BufferMemory = Literal["bram36", "uram", "sram"]
DspKind = Literal["dsp48e1", "dsp48e2", "dsp58"]
MemoryKind = Literal["ddr3", "ddr4", "lpddr4", "hbm2"]
Controller = Literal["hard", "soft"]
#: The FPGA resources a design is counted in, in report order (Device, Caps and Resources have these fields).
ResourceName = Literal["dsp", "lut", "ff", "bram36", "uram"]

# Every list of names is derived from its Literal type, so a new dataflow or PE kind is added in one place.
DATAFLOWS: tuple[str, ...] = get_args(Dataflow)
#: The ``--dataflow`` / sweep value for an array that switches dataflow per layer (``switchable_dataflows``).
PER_LAYER = "per-layer"
PE_KINDS: tuple[str, ...] = get_args(PeKind)
DSP_KINDS: tuple[str, ...] = get_args(DspKind)
MEMORY_KINDS: tuple[str, ...] = get_args(MemoryKind)
RESOURCE_NAMES: tuple[str, ...] = get_args(ResourceName)
#: Bit widths a layer may use (DESIGN.md, quantization reference facts); 7 is deliberately absent.
SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)

#: Capacity of one BRAM36 (36 Kbit, UG573) and one URAM (URAM288: 4K x 72 = 288 Kbit, UG573), in bits and bytes.
BRAM36_BITS = 36 * 1024
URAM_BITS = 4096 * 72
BRAM36_BYTES = BRAM36_BITS // 8
URAM_BYTES = URAM_BITS // 8

#: Largest array side (rows or cols) a target or an override may ask for: 16x the 256x256 of TPU v1
#: (Jouppi et al., ISCA 2017). assumption: no accelerator mixbit models is larger; bigger sides are typos.
MAX_ARRAY_SIDE = 4096


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
    dsp_kind: DspKind = "dsp48e2"
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

    kind: MemoryKind
    bandwidth_gbps: float
    channels: int = 1
    controller: Controller = "hard"


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
class Engine:
    """A second GEMM array for some layer kinds (e.g. UbiMoE's 16x16 Q/K/V engine beside its 3x16x16 FFN engine):
    ``rows`` × ``cols`` PEs of the main array's kind, dataflow and buffers, running the GEMMs whose kind is in
    ``kinds``, one after another with the rest of the inference."""

    name: str
    kinds: tuple[str, ...]
    rows: int
    cols: int


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
    fold_pipelining: bool = False  # consecutive folds overlap fill and drain (sim/kernels.py); False = SCALE-Sim
    nonlinear: Nonlinear = dataclasses.field(default_factory=Nonlinear)  # units of sim/nonlinear.py
    patchwise: Patchwise | None = None  # patch-wise (token-split) bits, sim/patchwise.py; None: not supported
    # dataflows the array can switch between from one layer to the next (a reconfigurable array); () = only
    # ``dataflow``. ``dataflow`` is then the mode the array starts in and the default of CLI overrides
    switchable_dataflows: tuple[Dataflow, ...] = ()
    # an ``int8`` PE that is really a wider fixed-point multiplier (weight bits, activation bits), e.g. an HLS
    # design's ap_fixed<16> x ap_fixed<32>: its DSP count (sim/resources.py ``array_dsps``) and the bytes its
    # operands take in DRAM and on chip (sim/simulate.py ``_stored_bits``) are the multiplier's; the MAC rate stays
    # one per PE per cycle. None: the PE multiplies the simulated bits.
    multiplier_bits: tuple[int, int] | None = None
    # an engine of its own for the attention matmuls (sim/attention.py); None: they run on the array
    attention: AttentionEngine | None = None
    # further GEMM arrays for chosen layer kinds; the main array runs every other GEMM
    engines: tuple[Engine, ...] = ()

    def unit_of(self, kind: str) -> str:
        """Where a GEMM of this kind runs: ``"attention"`` (the attention engine), a further engine's name, or
        ``""`` (the array)."""
        if self.attention is not None and kind in ATTENTION_KINDS:
            return "attention"
        return next((engine.name for engine in self.engines if kind in engine.kinds), "")

    @property
    def dataflows(self) -> tuple[str, ...]:
        """The dataflows a layer may run in: ``switchable_dataflows``, or just ``dataflow``."""
        return self.switchable_dataflows or (self.dataflow,)

    @property
    def per_layer_dataflow(self) -> bool:
        """Whether each layer picks its own dataflow."""
        return len(self.dataflows) > 1


@dataclass(frozen=True)
class PublishedResult:
    """One figure a paper reports for its design: a model at (wbits, abits), latency (ms) and/or frames per second."""

    model: str
    wbits: int
    abits: int
    latency_ms: float | None
    fps: float | None
    source: str
    note: str = ""
    img_size: tuple[int, int] | None = None  # input (height, width) pixels when not the model's default
    moe: MixtureOfExperts | None = None  # the model's MLPs as a mixture of experts (M3ViT), when it has them


@dataclass(frozen=True)
class Published:
    """What a published design reports (``[published]`` of a target under ``targets/published/``).

    Resources a paper leaves out are None; ``sources`` maps each given figure (``dsp``, ``lut``...) to its table.
    """

    paper: str
    results: tuple[PublishedResult, ...]
    dsp: int | None = None
    lut: int | None = None
    ff: int | None = None
    bram36: float | None = None
    sources: tuple[tuple[str, str], ...] = ()


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
    published: Published | None = None  # figures a paper reports for this design (targets/published/)

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

    def replace_array(self, rows: int | None = None, cols: int | None = None, dataflow: str | None = None) -> Target:
        """A copy with another array shape or dataflow (CLI ``--rows/--cols/--dataflow``, sweep points).

        Values are checked (sizes in 1..MAX_ARRAY_SIDE, a known dataflow) but the fit is not: an override that
        exceeds the device reports ``fits == False`` in its resources instead of raising. Buffers keep their bytes.
        ``dataflow`` fixes the array to one dataflow, or with ``PER_LAYER`` ("per-layer") lets each layer switch
        between the target's ``switchable_dataflows`` (OS, WS and IS when it names none).
        """
        acc = self.accelerator
        new_rows = acc.rows if rows is None else _side_override(rows, "rows")
        new_cols = acc.cols if cols is None else _side_override(cols, "cols")
        switchable = acc.switchable_dataflows
        new_dataflow = acc.dataflow
        if dataflow == PER_LAYER:
            switchable = acc.switchable_dataflows or DATAFLOWS
        elif dataflow is not None:
            if dataflow not in DATAFLOWS:
                expected = ", ".join((*DATAFLOWS, PER_LAYER))
                raise InputError(f"--dataflow: unknown dataflow {dataflow!r}; expected one of {expected}")
            new_dataflow, switchable = dataflow, ()
        new_acc = dataclasses.replace(
            acc, rows=new_rows, cols=new_cols, dataflow=new_dataflow, switchable_dataflows=switchable
        )
        return dataclasses.replace(self, accelerator=new_acc)

    def on_engine(self, engine: Engine) -> Target:
        """This target with ``engine``'s rows x cols as its only array (no attention engine, no further engines):
        what that engine's layers are costed and counted on."""
        acc = dataclasses.replace(self.accelerator, rows=engine.rows, cols=engine.cols, engines=(), attention=None)
        return dataclasses.replace(self, accelerator=acc)

    #: The name this method had before; kept for callers of the contract.
    with_array = replace_array


def _side_override(value: int, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"--{flag}: must be a positive integer, got {value!r}")
    if value > MAX_ARRAY_SIDE:
        raise InputError(f"--{flag}: at most {MAX_ARRAY_SIDE} (MAX_ARRAY_SIDE), got {value}")
    return value
