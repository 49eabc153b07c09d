"""The bridge from a torch model to a ``sim.Workload``: record one real batch-1 forward pass.

Rather than hand formulas per architecture, ``workload_from_model`` runs the model once on a dummy input
under a ``TorchFunctionMode`` while forward hooks keep the stack of modules being executed. Every
``F.linear`` / ``F.conv2d`` becomes a GEMM named by the module that ran it, every product of two activation
tensors inside an attention module becomes ``<attention>.matmul_qk`` / ``<attention>.matmul_av``, and
softmax, GELU, LayerNorm and residual adds become vector operators. Tensors carry the names of the
operators that produced them, so the graph's edges are the real data dependencies, not a guessed chain.
So timm ViT / DeiT / Swin and their variants (other depths, widths, image sizes) work without code per model.

Conventions (shared with ``quant`` and the bit plans):

* A GEMM from a module is named by the module's fully qualified name (``blocks.0.attn.qkv``, ``head``,
  ``layers.1.downsample.reduction``; for Swin the classifier is ``head.fc``). Weight GEMMs count weights
  only in ``weight_params`` (biases excluded).
* ``nn.Linear`` on an input of shape (..., K) is M×K by K×N with M the product of the leading dimensions
  (B·T tokens; for Swin windows × tokens per window). A ``Conv2d`` is its im2col GEMM: M = output pixels,
  K = C_in/groups · kh · kw, N = C_out/groups, ``count`` = groups; for the patch embedding M = patches,
  K = C·p·p, N = embed dim.
* Attention matmuls: the per-head GEMMs of one attention call are batched into ONE node with
  ``count`` = heads (× windows for Swin's ``WindowAttention``): q·kᵀ is M = tokens (per window),
  K = head dim, N = tokens; attention·v is M = tokens, K = tokens, N = head dim. Both operands are
  activations (``b_is_weight=False``, ``weight_params=0``). Fused ``scaled_dot_product_attention`` (a
  pretrained model given as an object may still use it) is recorded as the same three operators.
* Vector operators and their ``elements`` (values processed): ``<attention>.softmax`` (the score
  tensor), the GELU module (``blocks.0.mlp.act``, fc1's output), each LayerNorm module (``blocks.0.norm1``,
  its input) and two residual adds per transformer block, ``<block>.add_attn`` and ``<block>.add_mlp``.
  An add counts as residual when both operands are activations; adds of parameters or buffers (position
  embedding, relative-position bias, Swin's shift mask) are not recorded. Requantization is not recorded.
* A module that runs twice in one forward pass gets ``#2``, ``#3``, … after its name on later calls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import prod
from typing import Any

import networkx as nx
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from sim.errors import InputError
from sim.workload import Gemm, GemmKind, Operator, VectorKind, VectorOp, Workload

__all__ = ["workload_from_model"]

_TAG = "_mixbit_producers"  # attribute on activation tensors: names of the operators they derive from

_LINEAR = {"linear"}
_CONV = {"conv2d"}
_MATMUL = {"matmul", "__matmul__", "bmm", "mm"}
_ADD = {"add", "__add__", "__radd__", "__iadd__", "add_"}
_SDPA = {"scaled_dot_product_attention"}
_VECTOR: dict[str, VectorKind] = {
    "softmax": "softmax",
    "_softmax": "softmax",
    "gelu": "gelu",
    "layer_norm": "layernorm",
}
# modules whose forward is a single operator: the operator takes the module's name
_DEDICATED_TYPES = (nn.Linear, nn.Conv2d, nn.LayerNorm, nn.GELU, nn.Softmax)
_DEDICATED_SUFFIXES = ("linear", "conv2d", "softmax", "gelu", "layernorm", "matmul", "add")
_ATTENTION_MATMULS: dict[str, GemmKind] = {"matmul_qk": "attn_qk", "matmul_av": "attn_av"}
# vector-op name suffixes when the op runs inside a larger module (timm Attention's ``attn.softmax(-1)``)
_VECTOR_SUFFIX: dict[VectorKind, str] = {"softmax": "softmax", "gelu": "act", "layernorm": "norm"}


def workload_from_model(model_or_name: nn.Module | str, img_size: int | None = None) -> Workload:
    """Record the operators of one batch-1 inference of a timm ViT / DeiT / Swin (or a testbed ViT).

    ``model_or_name`` is a model object, used as it is (it may be pretrained), or a name that
    ``quant.models.create_model`` builds with ``pretrained=False`` (an unknown name raises
    ``quant.errors.InputError``). ``img_size`` (pixels) overrides the model's input resolution; a name is
    then built for that size. The model runs once, batch 1, under ``torch.no_grad`` in eval mode (its
    training mode is restored after).

    Attention matmuls: the per-head GEMMs of one attention call are batched into one node with
    ``count`` = heads (× windows for Swin), M×K by K×N per head, both operands activations. See the module
    docstring for all names, shapes and counting conventions. Errors in the model's forward pass on the dummy
    input (e.g. an ``img_size`` a fixed-size model rejects) raise ``sim.errors.InputError``.
    """
    from quant.errors import InputError as QuantInputError
    from quant.models import create_model

    if img_size is not None and (isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0):
        raise InputError(f"img_size={img_size!r}; must be a positive number of pixels")
    if isinstance(model_or_name, str):
        extra = {} if img_size is None else {"img_size": img_size}
        model = create_model(model_or_name, pretrained=False, **extra)
        label = model_or_name
    elif isinstance(model_or_name, nn.Module):
        model = model_or_name
        label = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
    else:
        raise InputError(f"model must be a torch nn.Module or a model name, not {type(model_or_name).__name__}")
    dummy = _dummy_input(model, img_size)
    recorder = _OperatorRecorder(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recorder.hooked():
            setattr(dummy, _TAG, frozenset())
            with recorder:
                model(dummy)
    except (RuntimeError, AssertionError, ValueError) as exc:
        if isinstance(exc, InputError | QuantInputError):
            raise
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"model {label!r} failed on a {tuple(dummy.shape)} input while recording its workload: {first_line}"
        ) from exc
    finally:
        model.train(was_training)
    if not recorder.ops:
        raise InputError(f"model {label!r}: no GEMM or vector operator was recorded in its forward pass")
    return Workload(label, recorder.graph())


def _dummy_input(model: nn.Module, img_size: int | None) -> torch.Tensor:
    """A batch-1 random image (N, C, H, W) of the size and channels the model expects."""
    patch_embed = getattr(model, "patch_embed", None)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    in_chans = convs[0].in_channels if convs else 3
    if img_size is not None:
        size: tuple[int, int] = (img_size, img_size)
    else:
        pe_size = getattr(patch_embed, "img_size", None)
        cfg_size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
        if pe_size is not None:
            size = (pe_size, pe_size) if isinstance(pe_size, int) else tuple(pe_size)[-2:]
        elif cfg_size is not None:
            size = tuple(cfg_size)[-2:]
        else:
            size = (224, 224)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, in_chans, *size, generator=generator, dtype=dtype).to(device)


@dataclass
class _Frame:
    """One running module call: its (unique) name, the module, and how many of each op it has run."""

    name: str
    module: nn.Module
    seen: Counter[str] = field(default_factory=Counter)


def _is_attention(module: nn.Module) -> bool:
    """An attention module (timm ``Attention``, Swin ``WindowAttention``, CaiT ``ClassAttn``, …)."""
    cls = type(module).__name__.lower()
    return "attention" in cls or ("attn" in cls and hasattr(module, "num_heads"))


def _is_block(module: nn.Module) -> bool:
    """A transformer block: has an attention and an MLP child (timm ``Block``, ``SwinTransformerBlock``)."""
    return isinstance(getattr(module, "attn", None), nn.Module) and isinstance(getattr(module, "mlp", None), nn.Module)


def _is_dedicated(module: nn.Module) -> bool:
    """A module whose forward is one operator, perhaps wrapped in quantizers: nn.Linear, nn.LayerNorm, nn.GELU,
    nn.Softmax and their quantized subclasses, ``quant``'s ``QuantMatMul`` / ``QuantSoftmax`` / ``QuantAdd``, or
    any module without children."""
    if isinstance(module, _DEDICATED_TYPES):
        return True
    return type(module).__name__.lower().endswith(_DEDICATED_SUFFIXES) or not any(True for _ in module.children())


def _is_quantizer(module: nn.Module) -> bool:
    """A fake-quant node: its arithmetic (scale, round, clamp) models a number format, not an operator."""
    cls = type(module).__name__.lower()
    return "quantizer" in cls or "fakequant" in cls


def _tag(value: Any) -> frozenset[str] | None:
    return getattr(value, _TAG, None) if isinstance(value, torch.Tensor) else None


class _OperatorRecorder(TorchFunctionMode):
    """Sees every torch function call of a forward pass and records GEMMs and vector ops with their inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.stack: list[_Frame] = []
        self.calls: Counter[str] = Counter()  # module name -> calls so far
        # weight tensor -> the module holding it, to name GEMMs that use a module's weight functionally
        self.weight_owner = {
            id(module.weight): name
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear | nn.Conv2d) and name
        }
        self.weight_uses: Counter[str] = Counter()
        self.ops: list[Operator] = []
        self.preds: list[frozenset[str]] = []

    # ---- module stack -------------------------------------------------------------------------------------
    def hooked(self) -> _Hooks:
        return _Hooks(self)

    def push(self, name: str, module: nn.Module) -> None:
        self.calls[name] += 1
        unique = name if self.calls[name] == 1 else f"{name}#{self.calls[name]}"
        self.stack.append(_Frame(unique, module))

    def pop(self) -> None:
        self.stack.pop()

    # ---- recording ----------------------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        tags = [tag for tag in map(_tag, inputs) if tag is not None]
        if not tags:  # parameters, buffers and constants only: not part of the activation flow
            return out
        sources = frozenset().union(*tags)
        fname = getattr(func, "__name__", "")
        if fname in _SDPA and self.stack:
            recorded = self._sdpa(self.stack[-1], args, kwargs)
        else:
            recorded = [(op, sources) for op in self._operators(fname, args, kwargs, out)]
        for op, preds in recorded:
            self.ops.append(op)
            self.preds.append(preds)
        if recorded:
            sources = frozenset({recorded[-1][0].name})
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and not isinstance(tensor, nn.Parameter):
                setattr(tensor, _TAG, sources)
        return out

    def _name(self, frame: _Frame, suffix: str) -> str:
        """``<module>.<suffix>``, numbered when the module runs the same kind of op again."""
        frame.seen[suffix] += 1
        n = frame.seen[suffix]
        base = f"{frame.name}.{suffix}" if frame.name else suffix
        return base if n == 1 else f"{base}_{n}"

    def _own_name(self, frame: _Frame, key: str, suffix: str) -> str:
        """The module's own name for the one op of a dedicated module (``blocks.0.norm1``), else ``<module>.<op>``."""
        if frame.name and frame.seen[key] == 0 and _is_dedicated(frame.module):
            frame.seen[key] += 1
            return frame.name
        return self._name(frame, suffix)

    def _operators(self, fname: str, args: tuple, kwargs: dict, out: Any) -> list[Operator]:
        if not self.stack or any(_is_quantizer(f.module) for f in self.stack):
            return []
        frame = self.stack[-1]
        if fname in _LINEAR:
            return [self._linear(frame, args, kwargs)]
        if fname in _CONV:
            return [self._conv(frame, args, kwargs, out)]
        if fname in _MATMUL and len(args) >= 2:
            return self._matmul(frame, args[0], args[1])
        if fname in _VECTOR:
            kind = _VECTOR[fname]
            x = args[0]
            row = int(x.shape[-1]) if kind in ("softmax", "layernorm") and x.dim() else 0
            return [VectorOp(self._own_name(frame, fname, _VECTOR_SUFFIX[kind]), kind, int(x.numel()), row)]
        if fname in _ADD and len(args) >= 2 and _tag(args[0]) is not None and _tag(args[1]) is not None:
            return [self._residual_add(frame, out)]
        return []

    def _weight_name(self, frame: _Frame, weight: torch.Tensor, key: str, suffix: str) -> str:
        """The name of the module that owns ``weight`` (even when called as ``F.linear(x, self.qkv.weight)``)."""
        owner = self.weight_owner.get(id(weight))
        if owner is None:
            return self._own_name(frame, key, suffix)
        self.weight_uses[owner] += 1
        uses = self.weight_uses[owner]
        if owner == frame.name.split("#")[0]:
            frame.seen[key] += 1
        return owner if uses == 1 else f"{owner}#{uses}"

    def _linear(self, frame: _Frame, args: tuple, kwargs: dict) -> Gemm:
        x = args[0]
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        n, k = weight.shape
        name = self._weight_name(frame, weight, "linear", "linear")
        return Gemm(name, _gemm_kind(name, self.stack), x.numel() // k, n, k, True, weight.numel())

    def _conv(self, frame: _Frame, args: tuple, kwargs: dict, out: torch.Tensor) -> Gemm:
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
        c_out, c_in_per_group = weight.shape[:2]
        m = out.numel() // c_out  # batch × output pixels
        name = self._weight_name(frame, weight, "conv2d", "conv")
        kind = _gemm_kind(name, self.stack)
        k = c_in_per_group * prod(weight.shape[2:])
        return Gemm(name, kind, m, c_out // groups, k, True, weight.numel(), groups)

    def _matmul(self, frame: _Frame, a: torch.Tensor, b: torch.Tensor) -> list[Operator]:
        if a.dim() < 2 or b.dim() < 2:
            return []
        m, k = a.shape[-2:]
        n = b.shape[-1]
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        if isinstance(b, nn.Parameter) or _tag(b) is None:  # activation × weight written as x @ W
            return [Gemm(self._name(frame, "matmul"), "gemm", m * prod(a.shape[:-2]), n, k, True, b.numel())]
        role = frame.name.split("#")[0].rsplit(".", 1)[-1]
        if role in _ATTENTION_MATMULS and _is_dedicated(frame.module):  # quant's QuantMatMul `<attn>.matmul_qk`
            return [
                Gemm(
                    self._own_name(frame, "matmul", "matmul"), _ATTENTION_MATMULS[role], m, n, k, False, 0, prod(batch)
                )
            ]
        suffix, kind = "matmul", "gemm"
        if _is_attention(frame.module):  # its first activation product is q·kᵀ, its second attention·v
            index = frame.seen["attention_matmuls"]
            frame.seen["attention_matmuls"] += 1
            if index < 2:
                suffix, kind = (("matmul_qk", "attn_qk"), ("matmul_av", "attn_av"))[index]
        return [Gemm(self._name(frame, suffix), kind, m, n, k, False, 0, prod(batch))]

    def _sdpa(self, frame: _Frame, args: tuple, kwargs: dict) -> list[tuple[Operator, frozenset[str]]]:
        """Fused attention as the three operators it stands for, each with the operators it reads."""
        q, key, v = (list(args) + [kwargs.get(k) for k in ("query", "key", "value")[len(args) :]])[:3]
        *batch, tokens, head_dim = q.shape
        count = prod(batch)
        keys = key.shape[-2]
        qk = Gemm(self._name(frame, "matmul_qk"), "attn_qk", tokens, keys, head_dim, False, 0, count)
        softmax = VectorOp(self._name(frame, "softmax"), "softmax", count * tokens * keys, keys)
        av = Gemm(self._name(frame, "matmul_av"), "attn_av", tokens, v.shape[-1], keys, False, 0, count)
        qk_inputs = (_tag(q) or frozenset()) | (_tag(key) or frozenset())
        return [
            (qk, qk_inputs),
            (softmax, frozenset({qk.name})),
            (av, frozenset({softmax.name}) | (_tag(v) or frozenset())),
        ]

    def _residual_add(self, frame: _Frame, out: torch.Tensor) -> VectorOp:
        if len(self.stack) > 1 and _is_block(self.stack[-2].module) and _is_dedicated(frame.module):
            frame = self.stack[-2]  # an add module of a block (quant's QuantAdd ``add1``) is the block's residual add
        if _is_block(frame.module):
            index = frame.seen["residual"]
            frame.seen["residual"] += 1
            name = self._name(frame, ("add_attn", "add_mlp")[index]) if index < 2 else self._name(frame, f"add_{index}")
        else:
            name = self._own_name(frame, "add", "add")
        return VectorOp(name, "add", int(out.numel()))

    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        for order, (op, preds) in enumerate(zip(self.ops, self.preds, strict=True)):
            if op.name in graph:
                raise InputError(f"workload recording: operator name {op.name!r} produced twice")
            graph.add_node(op.name, op=op, order=order)
            graph.add_edges_from((pred, op.name) for pred in sorted(preds))
        return graph


class _Hooks:
    """Context manager: forward pre/post hooks on every module keep ``recorder.stack`` in step with execution."""

    def __init__(self, recorder: _OperatorRecorder) -> None:
        self.recorder = recorder
        self.handles: list[Any] = []

    def __enter__(self) -> _Hooks:
        for name, module in self.recorder.model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._pre(name)))
            self.handles.append(module.register_forward_hook(self._post, always_call=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _pre(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            self.recorder.push(name, module)

        return hook

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        self.recorder.pop()


def _gemm_kind(name: str, stack: list[_Frame]) -> GemmKind:
    """The GEMM's role from its module path and the modules it runs inside."""
    parts = name.split("#")[0].split(".")
    leaf = parts[-1]
    inside_attention = any(_is_attention(f.module) for f in stack)
    if parts[0].startswith("head") or leaf.startswith("head"):
        return "head"
    if "patch_embed" in parts or "stem" in parts:
        return "patch_embed"
    if leaf == "reduction" or "downsample" in parts:
        return "patch_merge"
    if inside_attention and leaf in {"qkv", "q", "k", "v", "kv", "q_proj", "k_proj", "v_proj"}:
        return "qkv"
    if inside_attention and leaf in {"proj", "out_proj", "o_proj"}:
        return "proj"
    if leaf.startswith("fc1"):
        return "fc1"
    if leaf.startswith("fc2"):
        return "fc2"
    return "gemm"
