"""Detection backbones: a timm Swin or ViT at a detection resolution with an FPN neck, as a ``sim.Workload``.

What seeds 000 and 002 deploy (Mask R-CNN / RetinaNet on COCO with Swin backbones) runs the backbone on the whole
padded image and an FPN on four feature maps. This module builds that network from a timm model and records it
with ``workload_from_model`` (every GEMM, the neck's convolutions included, through the same conv path):

- **Image size**: the test scale (default 800×1333, mmdetection's COCO ``Resize(scale=(1333, 800),
  keep_ratio=True)``) padded to a multiple of 32 (mmdetection's ``Pad(size_divisor=32)``): 800×1344. Swin pads each
  block's feature map to whole windows and odd sizes before patch merging itself (timm does as mmdetection's
  ``SwinTransformer``), so the backbone sees the padded image as it is.
- **Swin**: the four stages' outputs, each through a LayerNorm (mmdetection's ``norm{i}`` per output stage,
  ``out_norms.{i}`` here), are the features C2..C5 at strides 4, 8, 16, 32. No classification head.
- **ViT**: a plain ViT has one stride (16); the outputs of blocks depth/4·i − 1 (i = 1..4) are the four features,
  all at stride 16 (ViTDet's deconvolution/pooling pyramid is not modelled: its resampling is not in the workload).
  The class token is dropped from the features.
- **Neck** (mmdetection ``FPN``, ``out_channels=256``): per level a lateral 1×1 convolution C_i → 256
  (``neck.lateral_convs.{i}``), a top-down pathway (nearest upsampling and an add: the add is a vector operator,
  the upsampling moves data only) and a 3×3 output convolution 256 → 256 (``neck.fpn_convs.{i}``), each an im2col
  GEMM. The P6 max-pool level of RetinaNet/Mask R-CNN has no MACs and is left out.

Sources: mmdetection 3.x ``configs/_base_/datasets/coco_detection.py`` (test scale, size divisor),
``configs/_base_/models/mask-rcnn_r50_fpn.py`` (FPN, 256 channels), ``mmdet/models/backbones/swin.py`` (output
norms, padding); ViTDet (Li et al., ECCV 2022) for plain-ViT pyramids.

Detection accuracy needs COCO, which is not shipped: quantization and allocation run on the backbone (its
classification loss on the data given), and this module only states what the detector costs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sim.errors import InputError
from sim.workload import Workload

__all__ = [
    "DETECTION_NOTE",
    "DETECTION_SIZE",
    "FPN_CHANNELS",
    "SIZE_DIVISOR",
    "DetectionCosts",
    "DetectionNetwork",
    "detection_costs",
    "detection_model",
    "detection_stage",
    "detection_workload",
    "detector_bits",
    "padded_size",
    "parse_img_size",
    "resized_backbone",
    "stage_totals",
    "workload_taps",
]

DETECTION_SIZE = (800, 1333)
"""(height, width) pixels: mmdetection's COCO test scale, Resize(scale=(1333, 800), keep_ratio=True)."""
SIZE_DIVISOR = 32
"""mmdetection pads the resized image to a multiple of 32 pixels (Pad(size_divisor=32))."""
FPN_CHANNELS = 256
"""mmdetection's FPN out_channels in the Mask R-CNN / RetinaNet configs."""
_FAMILIES = ("swin_transformer", "vision_transformer", "deit")  # timm modules whose models DetectionNetwork takes
_MAX_SIDE = 8192  # pixels: beyond any detection test scale, and a bound on the recorder's memory
STAGES = ("stage1", "stage2", "stage3", "stage4", "neck")
DETECTION_NOTE = (
    "detection accuracy needs COCO, which is not shipped: these are the costs of the backbone and FPN neck only "
    "(no RPN/ROI or dense heads)"
)


def parse_img_size(text: str, option: str = "--img-size") -> tuple[int, int]:
    """``"800x1333"`` (height × width pixels) or ``"800"`` (square) -> (height, width); bad text: ``InputError``."""
    match = re.fullmatch(r"\s*([0-9]+)\s*(?:[xX×]\s*([0-9]+))?\s*", str(text))
    if match is None:
        raise InputError(f"{option} {text!r}: expected HxW pixels (e.g. 800x1333) or one side")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) is not None else height
    for side, value in (("height", height), ("width", width)):
        if not 32 <= value <= _MAX_SIDE:
            raise InputError(f"{option} {text!r}: {side} {value} px is outside 32..{_MAX_SIDE}")
    return height, width


def padded_size(size: tuple[int, int], divisor: int = SIZE_DIVISOR) -> tuple[int, int]:
    """Each side rounded up to a multiple of ``divisor`` pixels (mmdetection's padding)."""
    return tuple(math.ceil(side / divisor) * divisor for side in size)  # type: ignore[return-value]


class FPN(nn.Module):
    """mmdetection's FPN without the extra levels: lateral 1×1 convs, top-down nearest upsampling and adds,
    3×3 output convs, ``channels`` wide."""

    def __init__(self, in_channels: list[int], channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:])
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]


class DetectionNetwork(nn.Module):
    """A timm Swin or ViT backbone (its modules keep their names) with four feature maps and an FPN ``neck``.

    ``kind`` is ``"swin"`` or ``"vit"``; ``taps``: the ViT blocks whose outputs are the features.
    """

    def __init__(self, backbone: nn.Module, channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        if not hasattr(backbone, "patch_embed"):
            raise InputError(
                f"detection: {type(backbone).__name__} is not a timm SwinTransformer or VisionTransformer; "
                "detection workloads cover Swin and ViT backbones"
            )
        self.patch_embed = backbone.patch_embed
        if hasattr(backbone, "layers"):  # timm SwinTransformer
            self.kind = "swin"
            self.layers = backbone.layers
            widths = [int(stage.blocks[-1].norm1.normalized_shape[0]) for stage in backbone.layers]
            if len(widths) != 4:
                raise InputError(f"detection: a Swin with {len(widths)} stages; the FPN takes 4")
            self.out_norms = nn.ModuleList(nn.LayerNorm(c) for c in widths)
            self.taps: tuple[int, ...] = ()
        elif hasattr(backbone, "blocks") and hasattr(backbone, "_pos_embed"):  # timm VisionTransformer
            self.kind = "vit"
            self.blocks = backbone.blocks
            self.norm_pre = backbone.norm_pre
            self._vit = [backbone]  # in a list: not a child module (its head is not part of the detector)
            depth = len(backbone.blocks)
            if depth < 4:
                raise InputError(f"detection: a ViT with {depth} blocks; the FPN takes outputs of 4")
            self.taps = tuple(depth * i // 4 - 1 for i in range(1, 5))
            widths = [int(backbone.embed_dim)] * 4
        else:
            raise InputError(
                f"detection: {type(backbone).__name__} is not a timm SwinTransformer or VisionTransformer; "
                "detection workloads cover Swin and ViT backbones"
            )
        self.neck = FPN(widths, channels)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four feature maps (N, C, H, W) the neck takes."""
        x = self.patch_embed(x)
        if self.kind == "swin":
            out = []
            for stage, norm in zip(self.layers, self.out_norms, strict=True):
                x = stage(x)
                out.append(norm(x).permute(0, 3, 1, 2))
            return out
        vit = self._vit[0]
        height, width = vit.patch_embed.grid_size
        x = self.norm_pre(vit._pos_embed(x))
        prefix = vit.num_prefix_tokens
        out = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.taps:
                tokens = x[:, prefix:]
                out.append(tokens.transpose(1, 2).reshape(x.shape[0], -1, height, width))
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.neck(self.features(x))


def detection_model(model_name: str, img_size: tuple[int, int] = DETECTION_SIZE, **kwargs: Any) -> nn.Module:
    """The timm backbone ``model_name`` (random weights) built for ``img_size`` padded to a multiple of 32.

    Only timm Swin and ViT names: anything else raises ``InputError`` naming the model."""
    from quant._torch import import_timm
    from quant.models import create_model, is_testbed

    height, width = padded_size(img_size)
    if is_testbed(model_name):
        raise InputError(f"--detection: {model_name!r} is a classification testbed; use a timm Swin or ViT name")
    timm = import_timm()
    if not timm.is_model(model_name):
        create_model(model_name)  # raises the usual unknown-model error
    family = timm.models.model_entrypoint(model_name).__module__.rsplit(".", 1)[-1]
    if family not in _FAMILIES:
        raise InputError(
            f"--detection: {model_name!r} is a timm {family} model; detection workloads cover Swin and ViT "
            f"backbones ({', '.join(_FAMILIES)})"
        )
    model = create_model(model_name, pretrained=False, img_size=(height, width), **kwargs)
    if not (hasattr(model, "layers") or hasattr(model, "_pos_embed")) or not hasattr(model, "patch_embed"):
        raise InputError(f"--detection: {model_name!r} ({type(model).__name__}) is not a timm Swin or ViT")
    return model


def detection_workload(
    model_or_name: nn.Module | str,
    img_size: tuple[int, int] = DETECTION_SIZE,
    channels: int = FPN_CHANNELS,
    name: str = "",
) -> Workload:
    """The detector's workload: backbone at ``img_size`` (padded to 32) and FPN neck, recorded by
    ``workload_from_model``. A model object must already be built for the padded size."""
    from allocator.bridge.workload import workload_from_model

    backbone = detection_model(model_or_name, img_size) if isinstance(model_or_name, str) else model_or_name
    network = DetectionNetwork(backbone, channels).eval()
    name = name or (model_or_name if isinstance(model_or_name, str) else type(backbone).__name__)
    height, width = padded_size(img_size)
    workload = workload_from_model(network)
    return Workload(f"{name}_fpn_{height}x{width}", workload.graph)


def workload_taps(workload: Workload) -> tuple[int, ...]:
    """The ViT blocks whose outputs feed the neck, read back from a detection workload (() for Swin): the FPN
    taps blocks depth/4·i − 1."""
    blocks = {int(m.group(1)) for g in workload.gemms if (m := re.match(r"blocks\.(\d+)\.", g.name))}
    if not blocks:
        return ()
    depth = max(blocks) + 1
    return tuple(depth * i // 4 - 1 for i in range(1, 5))


def detection_stage(name: str, taps: tuple[int, ...] = ()) -> str:
    """Which of ``STAGES`` an operator of a detection workload belongs to (the patch embedding counts to stage1;
    a ViT block to the stage its next feature tap closes, from ``taps``)."""
    if name.startswith("neck."):
        return "neck"
    if name.startswith("patch_embed"):
        return "stage1"
    match = re.match(r"(?:layers|out_norms)\.(\d+)", name)
    if match:
        return f"stage{int(match.group(1)) + 1}"
    match = re.match(r"blocks\.(\d+)", name)
    if match and taps:
        block = int(match.group(1))
        return f"stage{next(i for i, tap in enumerate(taps) if block <= tap) + 1}"
    return "stage1"  # ViT's position-embedding and pre-norm operators run before the first block


@dataclass(frozen=True)
class StageTotal:
    """One stage's share of a simulated detection workload (cycles, MACs, DRAM bytes, weight bytes at its bits)."""

    stage: str
    layers: int
    cycles: int
    latency_ms: float
    macs: int
    weight_bytes: float
    bytes_read: int
    bytes_written: int

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "layers": self.layers,
            "cycles": self.cycles,
            "latency_ms": self.latency_ms,
            "macs": self.macs,
            "weight_bytes": self.weight_bytes,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }


def stage_totals(workload: Workload, result: Any, taps: tuple[int, ...] = ()) -> list[StageTotal]:
    """Per-stage sums of a ``sim.simulate`` result on a detection workload (every operator, vector ones included)."""
    gemms_by_name = {gemm.name: gemm for gemm in workload.gemms}
    totals = []
    for stage in STAGES:
        layers = [layer for layer in result.layers if detection_stage(layer.name, taps) == stage]
        gemm_layers = [(gemms_by_name[layer.name], layer) for layer in layers if layer.name in gemms_by_name]
        gemms = [gemm for gemm, _ in gemm_layers]
        weight_bytes = sum(gemm.weight_params * layer.wbits / 8 for gemm, layer in gemm_layers)
        cycles = sum(layer.cycles for layer in layers)
        totals.append(
            StageTotal(
                stage,
                len(layers),
                cycles,
                cycles / (result.clock_mhz * 1e3),
                sum(op.macs for op in gemms),
                weight_bytes,
                sum(layer.bytes_read for layer in layers),
                sum(layer.bytes_written for layer in layers),
            )
        )
    return totals


@dataclass(frozen=True)
class DetectionCosts:
    """What ``allocate --detection`` costs: ``backbone`` (the detector's backbone operators, plus the scored model's
    GEMMs the detector lacks, e.g. the classification head, so every scored layer has a cost) for the ILP, and the
    FPN ``neck`` simulated once at fixed ``neck_bits`` (it is not in the quantized model, so no plan chooses its
    bits): ``neck_cycles`` and ``neck_energy_mj`` join every plan's fixed part."""

    backbone: Workload
    neck: Workload
    img_size: tuple[int, int]
    neck_bits: tuple[int, int]
    neck_cycles: int
    neck_energy_mj: float

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.backbone.name,
            "img_size": list(self.img_size),
            "padded_size": list(padded_size(self.img_size)),
            "fpn_channels": FPN_CHANNELS,
            "neck_bits": {"wbits": self.neck_bits[0], "abits": self.neck_bits[1]},
            "neck_cycles": self.neck_cycles,
            "neck_energy_mj": self.neck_energy_mj,
            "neck_gemms": len(self.neck.gemms),
            "note": DETECTION_NOTE + "; quantization, scores and accuracy are the backbone's on the data given",
        }


def resized_backbone(model: nn.Module, img_size: tuple[int, int]) -> nn.Module:
    """A copy of the timm Swin or ViT ``model`` (weights and structure kept) set for ``img_size`` padded to 32
    (timm's ``set_input_size``)."""
    import copy

    if not callable(getattr(model, "set_input_size", None)) or not hasattr(model, "patch_embed"):
        raise InputError(
            f"--detection: {type(model).__name__} is not a timm Swin or ViT; detection covers Swin and ViT backbones"
        )
    backbone = copy.deepcopy(model).eval()
    if hasattr(backbone, "layers"):  # Swin keeps its windows (timm would scale them with the grid; detectors do not)
        windows = getattr(backbone, "_ref_window_sizes", None) or [
            tuple(stage.blocks[0].window_size) for stage in backbone.layers
        ]
        backbone.set_input_size(img_size=padded_size(img_size), window_size=[tuple(w) for w in windows])
    else:
        backbone.set_input_size(img_size=padded_size(img_size))
    return backbone


def detection_costs(
    model: nn.Module, scored: Workload, img_size: tuple[int, int], target: Any, name: str = ""
) -> DetectionCosts:
    """Split the detector with ``model``'s backbone at ``img_size`` into the ILP's workload and the fixed-bit neck.

    ``scored``: the workload of ``model`` as scored (its GEMM names are the plan's); its GEMMs that the detector
    lacks (the classification head) are appended after the backbone. The neck runs at the target's widest weight and
    activation bits.
    """
    import sim

    detector = detection_workload(resized_backbone(model, img_size), img_size, name=name or type(model).__name__)
    graph = detector.graph.copy()
    neck_nodes = [node for node in graph if node.startswith("neck.")]
    neck = Workload(f"{detector.name}_neck", detector.graph.subgraph(neck_nodes).copy())
    graph.remove_nodes_from(neck_nodes)
    last = max(graph.nodes, key=lambda node: graph.nodes[node]["order"])
    order = graph.nodes[last]["order"]
    for gemm in scored.gemms:
        if gemm.name not in graph:
            order += 1
            graph.add_node(gemm.name, op=gemm, order=order)
            graph.add_edge(last, gemm.name)
            last = gemm.name
    accel = target.accelerator
    bits = (max(accel.weight_bits), max(accel.act_bits))
    result = sim.simulate(neck, target, bits)
    return DetectionCosts(
        Workload(f"{detector.name}_backbone", graph), neck, img_size, bits, result.cycles, result.energy_mj
    )


def detector_bits(plan_path: str, workload: Workload, target: Any) -> dict[str, tuple[int, int]]:
    """(wbits, abits) per GEMM of a detection workload from a backbone's bit plan (what ``allocate --detection``
    writes): the plan's layers as planned, the neck at the target's widest bits (as ``allocate --detection`` costs
    it) unless the plan names it, and the plan's classification head, which a detector lacks, left out. Any other
    plan layer the detector lacks, or a backbone GEMM the plan leaves out without a default, is an ``InputError``."""
    from sim.plan import load_bits

    bits, default, _ = load_bits(plan_path)
    names = [gemm.name for gemm in workload.gemms]
    unknown = sorted(name for name in set(bits) - set(names) if not name.split(".")[0].startswith("head"))
    if unknown:
        raise InputError(f"{plan_path}: layers.{unknown[0]}: not a GEMM of the detection workload {workload.name!r}")
    accel = target.accelerator
    neck = (max(accel.weight_bits), max(accel.act_bits))
    out = {}
    for name in names:
        if name in bits:
            out[name] = bits[name]
        elif name.startswith("neck."):
            out[name] = neck
        elif default is not None:
            out[name] = default
        else:
            raise InputError(f"{plan_path}: layers.{name}: missing, and the plan has no 'default'")
    return out
