"""Target files: the TOML schema of a board or accelerator, validated once into a frozen ``sim.target.Target``.

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
    rows, cols, dataflow (os|ws|is), pe (dsp_packed|lut|bitfusion|int8), weight_bits, act_bits, vector_lanes,
    fold_pipelining (optional bool: consecutive folds overlap fill and drain; default false = SCALE-Sim timing)
    multiplier_bits (optional [weight, activation] bits of an int8 PE's real fixed-point multiplier: DSPs per PE)
    [accelerator.nonlinear]        # optional: softmax/gelu/layernorm/add/requant units (sim/nonlinear.py)
    [accelerator.attention]        # optional: the attention matmuls on an engine of their own (sim/attention.py)
    queries, dims (per cycle), pipeline_depth (cycles), multiplier_bits ([right, left] operand bits), buffer_kib
    (K/V buffer, BRAM36), reread (bool: K/V read again per query block), port_bytes_per_cycle (its DRAM stream),
    streamed (bool: attn·v one query block behind q·kᵀ, scores kept on chip), instances (multiplier blocks)
    [[accelerator.engines]]        # optional, repeatable: a further GEMM array for some layer kinds
    name, kinds (e.g. ["qkv", "proj"]), rows, cols (PE kind, dataflow and buffers are the main array's)
    [accelerator.patchwise]        # optional: patch-wise (token-split) activation bits (sim/patchwise.py)
    token_sort (bool), reorder_cycles_per_token (cycles per token and GEMM call; needs a source)
    [accelerator.buffers]          # each of ifmap/filter/ofmap: {memory = "bram36"|"uram"|"sram", kib = N | share = f}
    [published]                    # optional (targets/published/): what the paper reports for the design
    paper, dsp, lut, ff, bram36    # resources the paper gives (each with a source), absent when it gives none
    [[published.results]]          # model (timm name), wbits, abits, latency_ms and/or fps, source, note,
                                   # img_size = [height, width] (optional: pixels, when not the model's default),
                                   # moe = { experts, experts_per_token, hidden, every, first } (optional)

Every number needs a source: the table's ``source`` covers all its numbers, ``source_<key>`` overrides
it for one key. A source is a citation (datasheet table, paper, repository file) or a string starting
with ``assumption:`` that says why the number was chosen.

Each table is one pydantic model below (``sim.schema``: strict types, no unknown keys, bounds). To add a key,
add a field to its model — annotated with ``SOURCED`` if it is a number that needs a source — and carry it
into the frozen object in ``_build``. The bounds are physical ranges, wide enough for any real device and
tight enough to catch a slip of units (``bandwidth_gbps = 1e-300``, ``kib = 0.0001``).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from sim.attention import ATTENTION_KINDS, AttentionEngine
from sim.errors import InputError
from sim.nonlinear import Nonlinear, parse_nonlinear
from sim.patchwise import Patchwise
from sim.resources import estimate_resources
from sim.schema import SOURCED, FileModel, SourcedTable, keyed_error, read_toml, validate
from sim.target import (
    BRAM36_BYTES,
    MAX_ARRAY_SIDE,
    RESOURCE_NAMES,
    SUPPORTED_BITS,
    URAM_BYTES,
    Accelerator,
    BufferMemory,
    Buffers,
    Caps,
    Controller,
    Dataflow,
    Device,
    DspKind,
    Engine,
    Memory,
    MemoryKind,
    PeKind,
    Published,
    PublishedResult,
    Target,
)
from sim.workload import GemmKind, MixtureOfExperts

__all__ = ["TargetFile", "list_published_targets", "list_targets", "load_target"]

# Bounds of physical quantities. Sources: the largest FPGA in DESIGN's board list (Alveo U250: 1.7 M LUT,
# 12,288 DSP, 2,688 BRAM36, 1,280 URAM) and today's fastest memories (an HBM3E stack moves about
# 1.2 TB/s; a chip with 8 stacks about 10 TB/s). assumption: 100x those counts and 10x that bandwidth are
# beyond any device mixbit is asked about, so larger values are typos or unit slips.
MAX_COUNT = 200_000_000  # LUT, FF
MAX_BLOCKS = 1_000_000  # DSP, BRAM36, URAM
MAX_BANDWIDTH_GBPS = 100_000.0
#: assumption: below 10 MB/s (a 1990s disk) a ViT's weights take minutes to stream; such a value is a unit slip.
MIN_BANDWIDTH_GBPS = 0.01
#: assumption: an accelerator clock between 1 MHz and 10 GHz (FPGA fabrics run 100-800 MHz, ASICs up to ~3 GHz).
MIN_CLOCK_MHZ, MAX_CLOCK_MHZ = 1.0, 10_000.0
#: assumption: a buffer smaller than 1 KiB cannot hold one 32x32 tile of 8-bit words; 16 GiB is past any on-chip SRAM.
MIN_BUFFER_KIB, MAX_SRAM_KIB = 1.0, 16 * 1024 * 1024
MAX_LANES = 65_536
MAX_CHANNELS = 64


class FpgaDevice(SourcedTable):
    TAG: ClassVar[str] = "fpga"
    kind: Literal["fpga"] = "fpga"
    part: Annotated[str, Field(min_length=1)]
    dsp_kind: DspKind = "dsp48e2"
    lut: Annotated[int, SOURCED, Field(gt=0, le=MAX_COUNT)]
    ff: Annotated[int, SOURCED, Field(gt=0, le=MAX_COUNT)]
    dsp: Annotated[int, SOURCED, Field(ge=0, le=MAX_BLOCKS)]
    bram36: Annotated[int, SOURCED, Field(gt=0, le=MAX_BLOCKS)]
    uram: Annotated[int, SOURCED, Field(ge=0, le=MAX_BLOCKS)]


class AsicDevice(SourcedTable):
    TAG: ClassVar[str] = "asic"
    kind: Literal["asic"]
    part: Annotated[str, Field(min_length=1)]
    sram_kib: Annotated[float, SOURCED, Field(ge=MIN_BUFFER_KIB, le=MAX_SRAM_KIB)]


def _device_kind(data: Any) -> Any:
    return data.get("kind", "fpga") if isinstance(data, dict) else "fpga"


class CapsTable(SourcedTable):
    lut: Annotated[float, SOURCED, Field(gt=0, le=1.0)]
    ff: Annotated[float, SOURCED, Field(gt=0, le=1.0)]
    dsp: Annotated[float, SOURCED, Field(gt=0, le=1.0)]
    bram36: Annotated[float, SOURCED, Field(gt=0, le=1.0)]
    uram: Annotated[float, SOURCED, Field(gt=0, le=1.0)]


class MemoryTable(SourcedTable):
    kind: MemoryKind
    bandwidth_gbps: Annotated[float | None, SOURCED, Field(ge=MIN_BANDWIDTH_GBPS, le=MAX_BANDWIDTH_GBPS)] = None
    # assumption: 1/64 of a byte to 65,536 bytes per cycle (a 512-bit AXI port moves 64)
    bandwidth_bytes_per_cycle: Annotated[float | None, SOURCED, Field(ge=1 / 64, le=65_536.0)] = None
    channels: Annotated[int, SOURCED, Field(gt=0, le=MAX_CHANNELS)] = 1
    controller: Controller = "hard"

    @model_validator(mode="after")
    def _one_bandwidth(self) -> MemoryTable:
        has_gbps, has_bpc = self.bandwidth_gbps is not None, self.bandwidth_bytes_per_cycle is not None
        if not has_gbps and not has_bpc:
            raise keyed_error("bandwidth_gbps", "missing key")
        if has_gbps and has_bpc:
            raise keyed_error("bandwidth_gbps", "give bandwidth_gbps or bandwidth_bytes_per_cycle, not both")
        return self


class BufferSpec(FileModel):
    memory: BufferMemory
    kib: Annotated[float | None, Field(ge=MIN_BUFFER_KIB, le=MAX_SRAM_KIB)] = None
    share: Annotated[float | None, Field(gt=0, le=1.0)] = None

    @model_validator(mode="after")
    def _size_or_share(self) -> BufferSpec:
        if (self.kib is None) == (self.share is None):
            raise keyed_error("kib", "give exactly one of kib (a size) or share (a fraction of the device)")
        return self


class BuffersTable(SourcedTable):
    ifmap: Annotated[BufferSpec, SOURCED]
    filter: Annotated[BufferSpec, SOURCED]
    ofmap: Annotated[BufferSpec, SOURCED]


BitList = Annotated[list[int], SOURCED, Field(min_length=1)]


#: [weight, activation] bits of a fixed-point multiplier; 64 bits is past any DSP-built datapath
MultiplierBits = Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=2, max_length=2)]


class PatchwiseTable(SourcedTable):
    token_sort: bool
    # assumption: a reorder of more than 10^4 cycles per token is a unit slip (a gather takes a few cycles a token)
    reorder_cycles_per_token: Annotated[int, SOURCED, Field(ge=0, le=10_000)] = 0


class AttentionTable(SourcedTable):
    # assumption: up to MAX_ARRAY_SIDE queries or dims per cycle; a 4096-wide attention loop is past any design
    queries: Annotated[int, SOURCED, Field(gt=0, le=MAX_ARRAY_SIDE)]
    dims: Annotated[int, SOURCED, Field(gt=0, le=MAX_ARRAY_SIDE)]
    # assumption: a loop fill of more than 10^4 cycles is a unit slip (HLS pipelines are tens of stages deep)
    pipeline_depth: Annotated[int, SOURCED, Field(ge=0, le=10_000)] = 0
    multiplier_bits: Annotated[MultiplierBits | None, SOURCED] = None
    buffer_kib: Annotated[float, SOURCED, Field(ge=0, le=MAX_SRAM_KIB)] = 0.0
    reread: bool = False
    streamed: bool = False
    instances: Annotated[int, SOURCED, Field(ge=1, le=64)] = 1

    @model_validator(mode="after")
    def _streamed_needs_two(self) -> AttentionTable:
        if self.streamed and self.instances < 2:
            raise keyed_error("instances", "a streamed engine runs q·kᵀ and attn·v at once: at least 2 instances")
        return self

    # assumption: 1/64 of a byte to 65,536 bytes per cycle, as memory.bandwidth_bytes_per_cycle
    port_bytes_per_cycle: Annotated[float | None, SOURCED, Field(ge=1 / 64, le=65_536.0)] = None


class EngineTable(SourcedTable):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    kinds: Annotated[list[GemmKind], Field(min_length=1)]
    rows: Annotated[int, SOURCED, Field(gt=0, le=MAX_ARRAY_SIDE)]
    cols: Annotated[int, SOURCED, Field(gt=0, le=MAX_ARRAY_SIDE)]


class AcceleratorTable(SourcedTable):
    rows: Annotated[int, SOURCED, Field(gt=0, le=MAX_ARRAY_SIDE)]
    cols: Annotated[int, SOURCED, Field(gt=0, le=MAX_ARRAY_SIDE)]
    dataflow: Dataflow
    pe: PeKind
    weight_bits: BitList
    act_bits: BitList
    vector_lanes: Annotated[int, SOURCED, Field(gt=0, le=MAX_LANES)]
    buffers: BuffersTable
    fold_pipelining: bool = False
    # a reconfigurable array: the dataflows each layer may pick from (must include ``dataflow``)
    switchable_dataflows: Annotated[list[Dataflow], Field(min_length=2)] | None = None
    # one sub-table per operator kind, each with its own source; checked by sim.nonlinear.parse_nonlinear
    nonlinear: dict[str, Any] | None = None
    patchwise: PatchwiseTable | None = None
    # [weight, activation] bits of the fixed-point multiplier an int8 PE stands for (an HLS ap_fixed design)
    multiplier_bits: Annotated[MultiplierBits | None, SOURCED] = None
    # an engine of its own for the attention matmuls (sim/attention.py)
    attention: AttentionTable | None = None
    # further GEMM arrays, each for the layer kinds it names (sim.target.Engine)
    engines: list[EngineTable] | None = None

    @model_validator(mode="after")
    def _supported_bits(self) -> AcceleratorTable:
        for key in ("weight_bits", "act_bits"):
            values = getattr(self, key)
            for value in values:
                if value not in SUPPORTED_BITS:
                    supported = ", ".join(map(str, SUPPORTED_BITS))
                    raise keyed_error(key, f"unsupported bit width {value}; supported: {supported}")
            if len(set(values)) != len(values):
                raise keyed_error(key, "bit width listed twice")
        switchable = self.switchable_dataflows
        if switchable is not None:
            if len(set(switchable)) != len(switchable):
                raise keyed_error("switchable_dataflows", "dataflow listed twice")
            if self.dataflow not in switchable:
                raise keyed_error("switchable_dataflows", f"must include the array's dataflow {self.dataflow!r}")
        if self.multiplier_bits is not None and self.pe != "int8":
            raise keyed_error("multiplier_bits", f"only an int8 PE stands for a wider multiplier, not pe = {self.pe!r}")
        taken: dict[str, str] = {}
        names = [engine.name for engine in self.engines or ()]
        for name in names:
            if names.count(name) > 1:
                raise keyed_error("engines", f"engine name {name!r} used twice")
        for engine in self.engines or ():
            for kind in engine.kinds:
                if kind in taken:
                    raise keyed_error(
                        "engines", f"layer kind {kind!r} is on engines {taken[kind]!r} and {engine.name!r}"
                    )
                if self.attention is not None and kind in ATTENTION_KINDS:
                    raise keyed_error("engines", f"layer kind {kind!r} runs on the [accelerator.attention] engine")
                taken[kind] = engine.name
        return self


class MoeTable(FileModel):
    # assumption: up to 4096 experts and hidden widths up to 65,536 cover published MoE ViTs (M3ViT: 16 of 384)
    experts: Annotated[int, Field(gt=0, le=4096)]
    experts_per_token: Annotated[int, Field(gt=0, le=4096)]
    hidden: Annotated[int, Field(gt=0, le=65_536)]
    every: Annotated[int, Field(gt=0, le=1024)] = 2
    first: Annotated[int, Field(ge=0, le=1024)] = 1

    @model_validator(mode="after")
    def _top_k(self) -> MoeTable:
        if self.experts_per_token > self.experts:
            raise keyed_error("experts_per_token", f"at most experts = {self.experts}, got {self.experts_per_token}")
        return self


class PublishedResultTable(FileModel):
    model: Annotated[str, Field(min_length=1)]
    wbits: Annotated[int, Field(ge=1, le=32)]
    abits: Annotated[int, Field(ge=1, le=32)]
    latency_ms: Annotated[float | None, Field(gt=0, le=1e6)] = None
    fps: Annotated[float | None, Field(gt=0, le=1e9)] = None
    source: Annotated[str, Field(min_length=1)]
    note: str = ""
    # assumption: 16 to 4096 pixels a side covers every ViT input (CIFAR-size 32 up to 4K frames)
    img_size: Annotated[list[Annotated[int, Field(ge=16, le=4096)]], Field(min_length=2, max_length=2)] | None = None
    # the model's MLPs as a mixture of experts (sim.workload.MixtureOfExperts), e.g. M3ViT's
    moe: MoeTable | None = None

    @model_validator(mode="after")
    def _latency_or_fps(self) -> PublishedResultTable:
        if self.latency_ms is None and self.fps is None:
            raise keyed_error("latency_ms", "give latency_ms or fps (or both)")
        return self


class PublishedTable(SourcedTable):
    paper: Annotated[str, Field(min_length=1)]
    dsp: Annotated[int | None, SOURCED, Field(ge=0, le=MAX_BLOCKS)] = None
    lut: Annotated[int | None, SOURCED, Field(ge=0, le=MAX_COUNT)] = None
    ff: Annotated[int | None, SOURCED, Field(ge=0, le=MAX_COUNT)] = None
    bram36: Annotated[float | None, SOURCED, Field(ge=0, le=MAX_BLOCKS)] = None
    results: Annotated[list[PublishedResultTable], Field(min_length=1)]


class TargetFile(SourcedTable):
    """A whole target file (the schema in this module's docstring)."""

    description: Annotated[str, Field(min_length=1)]
    clock_mhz: Annotated[float, SOURCED, Field(ge=MIN_CLOCK_MHZ, le=MAX_CLOCK_MHZ)]
    device: Annotated[
        Annotated[FpgaDevice, Tag("fpga")] | Annotated[AsicDevice, Tag("asic")], Discriminator(_device_kind)
    ]
    caps: CapsTable | None = None
    memory: MemoryTable
    accelerator: AcceleratorTable
    published: PublishedTable | None = None

    @model_validator(mode="before")
    @classmethod
    def _caps_for_fpga_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("device"), dict):
            asic = _device_kind(data["device"]) == "asic"
            if asic and "caps" in data:
                raise keyed_error("caps", "an asic device has no FPGA caps; remove the table")
            if not asic and "caps" not in data:
                raise keyed_error("caps", "missing table")
        return data


# ---------------------------------------------------------------------------------------------------------
# Loading


def list_targets() -> list[str]:
    """Names of the shipped targets, sorted."""
    root = importlib.resources.files("targets")
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def list_published_targets() -> list[Path]:
    """Paths of the published designs shipped as targets (``targets/published/*.toml``), sorted by name."""
    root = importlib.resources.files("targets") / "published"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".toml"))


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
    raw = read_toml(path, "target")
    schema = validate(TargetFile, raw, path)
    target = _build(path, schema)
    _check_fit(target)
    return target


def _fail(path: Path, key: str, reason: str) -> InputError:
    return InputError(f"{path}: {key}: {reason}")


def _build(path: Path, file: TargetFile) -> Target:
    """The frozen Target of a validated file; checks that need two tables at once (the device and a buffer)."""
    sources = dict(file.sources)
    for prefix, table in (
        ("device.", file.device),
        ("caps.", file.caps),
        ("memory.", file.memory),
        ("accelerator.", file.accelerator),
        ("accelerator.buffers.", file.accelerator.buffers),
        ("accelerator.patchwise.", file.accelerator.patchwise),
        ("accelerator.attention.", file.accelerator.attention),
    ):
        if table is not None:
            sources.update({f"{prefix}{key}": text for key, text in table.sources.items()})
    for engine in file.accelerator.engines or ():
        sources.update({f"accelerator.engines.{engine.name}.{key}": text for key, text in engine.sources.items()})
    device = _device(file)
    caps = Caps(**{name: 1.0 if file.caps is None else getattr(file.caps, name) for name in RESOURCE_NAMES})
    memory = file.memory
    if memory.bandwidth_gbps is not None:
        bandwidth = memory.bandwidth_gbps
    else:
        assert memory.bandwidth_bytes_per_cycle is not None
        bandwidth = memory.bandwidth_bytes_per_cycle * file.clock_mhz * 1e6 / 1e9
        sources["memory.bandwidth_gbps"] = sources["memory.bandwidth_bytes_per_cycle"]
    acc = file.accelerator
    nonlinear = None if acc.nonlinear is None else parse_nonlinear(acc.nonlinear, f"{path}: accelerator.nonlinear")
    if acc.nonlinear is not None:  # parse_nonlinear checked that every unit has a source: record it per number
        for kind, spec in acc.nonlinear.items():
            if kind == "lanes_pipeline_depth":
                sources["accelerator.nonlinear.lanes_pipeline_depth"] = acc.nonlinear["source"]
            elif isinstance(spec, dict):
                for key, value in spec.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        sources[f"accelerator.nonlinear.{kind}.{key}"] = spec["source"]
    if acc.pe in ("dsp_packed", "int8") and device.kind == "fpga" and device.dsp == 0:
        raise _fail(path, "accelerator.pe", f"{acc.pe} PEs need DSP slices and the device has none")
    if acc.pe == "dsp_packed" and device.dsp_kind == "dsp48e1":
        # WP486's two-products-per-DSP scheme needs the 27-bit pre-adder of DSP48E2 (DSP48E1 has 25 bits)
        raise _fail(path, "accelerator.pe", "dsp_packed PEs need DSP48E2 or DSP58 slices (device.dsp_kind = dsp48e1)")
    return Target(
        name=path.name.removesuffix(".toml"),
        description=file.description,
        path=path,
        clock_mhz=float(file.clock_mhz),
        device=device,
        caps=caps,
        memory=Memory(
            kind=memory.kind, bandwidth_gbps=float(bandwidth), channels=memory.channels, controller=memory.controller
        ),
        accelerator=Accelerator(
            rows=acc.rows,
            cols=acc.cols,
            dataflow=acc.dataflow,
            pe=acc.pe,
            weight_bits=tuple(sorted(acc.weight_bits)),
            act_bits=tuple(sorted(acc.act_bits)),
            buffers=_buffers(path, acc.buffers, device),
            vector_lanes=acc.vector_lanes,
            fold_pipelining=acc.fold_pipelining,
            nonlinear=Nonlinear() if nonlinear is None else nonlinear,
            switchable_dataflows=tuple(acc.switchable_dataflows or ()),
            patchwise=None
            if acc.patchwise is None
            else Patchwise(acc.patchwise.token_sort, acc.patchwise.reorder_cycles_per_token),
            multiplier_bits=None if acc.multiplier_bits is None else (acc.multiplier_bits[0], acc.multiplier_bits[1]),
            attention=None if acc.attention is None else _attention(acc.attention),
            engines=tuple(Engine(e.name, tuple(e.kinds), e.rows, e.cols) for e in acc.engines or ()),
        ),
        sources=tuple(sorted(sources.items())),
        published=None if file.published is None else _published(file.published),
    )


def _attention(table: AttentionTable) -> AttentionEngine:
    bits = table.multiplier_bits
    return AttentionEngine(
        queries=table.queries,
        dims=table.dims,
        pipeline_depth=table.pipeline_depth,
        multiplier_bits=None if bits is None else (bits[0], bits[1]),
        buffer_kib=float(table.buffer_kib),
        reread=table.reread,
        streamed=table.streamed,
        instances=table.instances,
        port_bytes_per_cycle=None if table.port_bytes_per_cycle is None else float(table.port_bytes_per_cycle),
    )


def _published(table: PublishedTable) -> Published:
    return Published(
        paper=table.paper,
        results=tuple(
            PublishedResult(
                r.model,
                r.wbits,
                r.abits,
                r.latency_ms,
                r.fps,
                r.source,
                r.note,
                None if r.img_size is None else (r.img_size[0], r.img_size[1]),
                None if r.moe is None else MixtureOfExperts(**r.moe.model_dump()),
            )
            for r in table.results
        ),
        dsp=table.dsp,
        lut=table.lut,
        ff=table.ff,
        bram36=table.bram36,
        sources=tuple(sorted(table.sources.items())),
    )


def _device(file: TargetFile) -> Device:
    device = file.device
    if isinstance(device, AsicDevice):
        sram_bytes = round(device.sram_kib * 1024)
        return Device(part=device.part, lut=0, ff=0, dsp=0, bram36=0, uram=0, kind="asic", sram_bytes=sram_bytes)
    return Device(
        part=device.part,
        lut=device.lut,
        ff=device.ff,
        dsp=device.dsp,
        bram36=device.bram36,
        uram=device.uram,
        kind="fpga",
        dsp_kind=device.dsp_kind,
    )


def _buffers(path: Path, table: BuffersTable, device: Device) -> Buffers:
    sizes: dict[str, int] = {}
    memories: dict[str, BufferMemory] = {}
    for role in ("ifmap", "filter", "ofmap"):
        key = f"accelerator.buffers.{role}"
        spec: BufferSpec = getattr(table, role)
        choices = ("sram",) if device.kind == "asic" else ("bram36", "uram")
        if spec.memory not in choices:
            raise _fail(path, f"{key}.memory", f"unknown value {spec.memory!r}; expected one of {', '.join(choices)}")
        if spec.memory == "uram" and device.uram == 0:
            raise _fail(path, f"{key}.memory", f"the device ({device.part}) has no URAM")
        if spec.kib is not None:
            sizes[role] = round(spec.kib * 1024)
        else:
            assert spec.share is not None
            if device.kind == "asic":
                raise _fail(path, f"{key}.share", "an asic device has no BRAM/URAM to share; give kib")
            count = device.uram if spec.memory == "uram" else device.bram36
            blocks = math.floor(spec.share * count)
            if blocks == 0:
                raise _fail(path, f"{key}.share", f"{spec.share} of {count} {spec.memory} is less than one block")
            sizes[role] = blocks * (URAM_BYTES if spec.memory == "uram" else BRAM36_BYTES)
        memories[role] = spec.memory
    return Buffers(
        ifmap_bytes=sizes["ifmap"],
        filter_bytes=sizes["filter"],
        ofmap_bytes=sizes["ofmap"],
        ifmap_memory=memories["ifmap"],
        filter_memory=memories["filter"],
        ofmap_memory=memories["ofmap"],
    )


#: Which file key a resource overrun is blamed on, by the component that uses most of it.
_COMPONENT_KEYS = {
    "array": "accelerator.rows",
    "accumulators": "accelerator.rows",
    "buffers": "accelerator.buffers",
    "vector_unit": "accelerator.vector_lanes",
    "nonlinear_units": "accelerator.nonlinear",
    "memory_interface": "memory",
    "control": "accelerator",
}


def _check_fit(target: Target) -> None:
    """A file whose accelerator needs more than the whole device (not just its caps) is impossible."""
    if target.is_asic:
        buffers = target.accelerator.buffers.total_bytes
        if buffers > target.device.sram_bytes:
            raise InputError(
                f"{target.path}: accelerator.buffers: buffers take {buffers / 1024:g} KiB, "
                f"more than the chip's {target.device.sram_bytes / 1024:g} KiB of SRAM (device.sram_kib)"
            )
        return
    resources = estimate_resources(target)
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
