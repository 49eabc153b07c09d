"""A small ONNX graph builder, and integer arithmetic written as standard ONNX operators.

ONNX has no arithmetic right shift on signed integers (``BitShift`` takes unsigned types only), so a
shift by s is a floor division by 2^s: ``Div(x − Mod(x, 2^s), 2^s)``. ``Mod`` with ``fmod=0`` takes the
divisor's sign (Python's ``%``), so x − Mod(x, 2^s) is an exact multiple of 2^s and the truncating ``Div``
is exact. Every helper here reproduces one function of ``quant.intops`` bit for bit on int64 tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MAX_SHIFT", "POW2", "Graph", "IntOps"]

MAX_SHIFT = 62
"""Largest shift a power-of-two constant can hold in int64 (2^62)."""
POW2 = np.array([1 << i for i in range(MAX_SHIFT + 1)], dtype=np.int64)

ONNX_DTYPE = {
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int16): TensorProto.INT16,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
}


class Graph:
    """Nodes, initializers, inputs and outputs of one ONNX graph, with unique names."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._constants: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def fresh(self, hint: str) -> str:
        """A tensor name not used before, starting with ``hint``."""
        base = hint.replace("/", ".") or "t"
        name, index = base, 0
        while name in self._used:
            index += 1
            name = f"{base}_{index}"
        self._used.add(name)
        return name

    def const(self, value: Any, dtype: Any = np.int64, name: str | None = None) -> str:
        """An initializer holding ``value`` (shared when the same small constant is asked for twice)."""
        array = np.asarray(value, dtype=dtype)
        key = (str(array.dtype), array.tobytes(), array.shape)
        if name is None and array.size <= 64 and key in self._constants:
            return self._constants[key]
        tensor_name = self.fresh(name or "c")
        self.initializers.append(numpy_helper.from_array(array, tensor_name))
        if name is None and array.size <= 64:
            self._constants[key] = tensor_name
        return tensor_name

    def op(self, op_type: str, *inputs: str, out: str | None = None, domain: str = "", **attrs: Any) -> str:
        """Append one node; return its (single) output's name."""
        output = self.fresh(out or op_type.lower())
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), [output], name=self.fresh(f"{op_type}_node"), domain=domain, **attrs
            )
        )
        return output

    def add_input(self, name: str, elem_type: int, shape: Sequence[int | str]) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def add_output(self, source: str, name: str, elem_type: int, shape: Sequence[int | str] | None = None) -> str:
        """Expose ``source`` as graph output ``name`` (an Identity node gives it that name)."""
        name = self.fresh(name)
        self.nodes.append(helper.make_node("Identity", [source], [name], name=self.fresh("Identity_node")))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, None if shape is None else list(shape)))
        return name

    def model(self, opset: int, *, domains: Sequence[tuple[str, int]] = (), doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in domains)]
        model = helper.make_model(graph, opset_imports=imports, producer_name="mixbit", doc_string=doc)
        model.ir_version = 8
        if not domains:  # standard operators only: shape inference types every output
            model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
            del model.graph.value_info[:]
        return model


class IntOps:
    """``quant.intops`` on int64 ONNX tensors (names in ``graph``)."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph

    def i64(self, value: Any) -> str:
        return self.g.const(value, np.int64)

    # -- plain arithmetic
    def add(self, a: str, b: str) -> str:
        return self.g.op("Add", a, b)

    def sub(self, a: str, b: str) -> str:
        return self.g.op("Sub", a, b)

    def mul(self, a: str, b: str) -> str:
        return self.g.op("Mul", a, b)

    def cast(self, x: str, to: int) -> str:
        return self.g.op("Cast", x, to=to)

    def where(self, condition: str, a: str, b: str) -> str:
        return self.g.op("Where", condition, a, b)

    def clamp(self, x: str, low: int | str | None = None, high: int | str | None = None) -> str:
        if low is not None:
            x = self.g.op("Max", x, low if isinstance(low, str) else self.i64(low))
        if high is not None:
            x = self.g.op("Min", x, high if isinstance(high, str) else self.i64(high))
        return x

    def div_nonneg(self, a: str, b: str) -> str:
        """⌊a/b⌋ for a ≥ 0, b > 0 (ONNX Div truncates, which is the floor there)."""
        return self.g.op("Div", a, b)

    def floor_div(self, a: str, b: str) -> str:
        """⌊a/b⌋ for any a and b > 0 (torch's rounding_mode="floor", Python's //)."""
        return self.g.op("Div", self.g.op("Sub", a, self.g.op("Mod", a, b, fmod=0)), b)

    def shift_right(self, x: str, shift: int) -> str:
        """Arithmetic x >> shift for a constant shift."""
        if shift == 0:
            return x
        return self.floor_div(x, self.i64(1 << shift))

    def shift_left(self, x: str, shift: int) -> str:
        return x if shift == 0 else self.mul(x, self.i64(1 << shift))

    def pow2(self, exponent: str) -> str:
        """2^exponent of an int64 tensor with 0 ≤ exponent ≤ 62 (a table lookup)."""
        return self.g.op("Gather", self.i64(POW2), exponent, axis=0)

    def shift_round(self, x: str, shift: int | np.ndarray) -> str:
        """``intops.shift_round`` with half-up rounding: (x + 2^(s−1)) >> s, and x where s = 0."""
        shifts = np.asarray(shift, dtype=np.int64)
        if shifts.size and (shifts.min() < 0 or shifts.max() > MAX_SHIFT):
            raise ValueError(f"shift out of range 0..{MAX_SHIFT}: {int(shifts.min())}..{int(shifts.max())}")
        if not shifts.any():
            return x
        half = np.where(shifts > 0, np.left_shift(1, np.maximum(shifts - 1, 0)), 0).astype(np.int64)
        divisor = np.left_shift(np.int64(1), shifts).astype(np.int64)
        if shifts.ndim == 0:
            return self.floor_div(self.add(x, self.i64(int(half))), self.i64(int(divisor)))
        return self.floor_div(self.add(x, self.i64(half)), self.i64(divisor))

    def requantize(self, acc: str, mantissa: np.ndarray | int, shift: np.ndarray | int) -> str:
        """``intops.requantize``: (acc·m)·2^−s rounded half up, factors per channel on the last axis."""
        return self.shift_round(self.mul(acc, self.i64(mantissa)), shift)

    # -- I-ViT kernels
    def times_log2e(self, x: str) -> str:
        return self.sub(self.add(x, self.shift_right(x, 1)), self.shift_right(x, 4))

    def shift_exp2(self, neg: str, frac_bits: int, exp_frac_bits: int) -> str:
        """``intops.shift_exp2``: 2^(neg·2^−F) in units of 2^−exp_frac_bits for neg ≤ 0."""
        magnitude = self.g.op("Neg", neg)
        whole = self.shift_right(magnitude, frac_bits)
        fraction = self.sub(magnitude, self.shift_left(whole, frac_bits))
        if frac_bits + 1 <= exp_frac_bits:
            linear = self.sub(self.i64(1 << exp_frac_bits), self.shift_left(fraction, exp_frac_bits - frac_bits - 1))
        else:
            linear = self.sub(self.i64(1 << exp_frac_bits), self.shift_right(fraction, frac_bits + 1 - exp_frac_bits))
        # linear ≤ 2^exp_frac_bits, so any shift past MAX_SHIFT gives 0 as the shift by ≤ 63 does
        return self.div_nonneg(linear, self.pow2(self.clamp(whole, high=MAX_SHIFT)))

    def shiftmax(
        self, logits: str, frac_bits: int, exp_frac_bits: int, prob_frac_bits: int, reciprocal_bits: int
    ) -> str:
        """``intops.shiftmax`` over the last axis."""
        peak = self.g.op("ReduceMax", logits, axes=[-1], keepdims=1)
        exp = self.shift_exp2(self.times_log2e(self.sub(logits, peak)), frac_bits, exp_frac_bits)
        total = self.g.op("ReduceSum", exp, self.i64([-1]), keepdims=1)
        reciprocal = self.div_nonneg(self.i64(1 << reciprocal_bits), total)
        return self.shift_round(self.mul(exp, reciprocal), reciprocal_bits - prob_frac_bits)

    def shift_gelu(self, x: str, frac_bits: int, exp_frac_bits: int) -> str:
        """``intops.shift_gelu``: x·σ(1.702x) in units of 2^−(2·frac_bits)."""
        scaled = self.add(self.add(self.add(x, self.shift_right(x, 1)), self.shift_right(x, 3)), self.shift_right(x, 4))
        negative_abs = self.g.op("Neg", self.g.op("Abs", scaled))
        exp = self.shift_exp2(self.times_log2e(negative_abs), frac_bits, exp_frac_bits)
        one = self.i64(1 << exp_frac_bits)
        sigmoid_neg = self.div_nonneg(self.shift_left(exp, frac_bits), self.add(exp, one))
        non_negative = self.g.op("GreaterOrEqual", x, self.i64(0))
        sigmoid = self.where(non_negative, self.sub(self.i64(1 << frac_bits), sigmoid_neg), sigmoid_neg)
        return self.mul(x, sigmoid)

    def isqrt(self, x: str, iterations: int) -> str:
        """``intops.isqrt``: ⌊√x⌋ by integer Newton steps from above, unrolled ``iterations`` times (a step that
        no longer lowers the guess keeps it, as the loop in ``intops`` stops there)."""
        positive = self.clamp(x, low=1)
        above = self.g.op("GreaterOrEqual", self.g.op("Unsqueeze", positive, self.i64([-1])), self.i64(POW2))
        bit_length = self.g.op("ReduceSum", self.cast(above, TensorProto.INT64), self.i64([-1]), keepdims=0)
        guess = self.pow2(self.div_nonneg(self.add(bit_length, self.i64(1)), self.i64(2)))
        for _ in range(iterations):
            step = self.shift_right(self.add(guess, self.div_nonneg(positive, guess)), 1)
            guess = self.where(self.g.op("Less", step, guess), step, guess)
        return self.where(self.g.op("Equal", x, self.i64(0)), self.i64(0), guess)

    def int_layernorm(
        self, x: str, channels: int, eps_codes: int, ln_frac_bits: int, reciprocal_bits: int, iterations: int
    ) -> str:
        """``intops.int_layernorm`` over the last axis."""
        total = self.g.op("ReduceSum", x, self.i64([-1]), keepdims=1)
        mean = self.floor_div(self.add(self.mul(total, self.i64(2)), self.i64(channels)), self.i64(2 * channels))
        centred = self.sub(x, mean)
        squares = self.g.op("ReduceSum", self.mul(centred, centred), self.i64([-1]), keepdims=1)
        variance = self.div_nonneg(squares, self.i64(channels))
        std = self.clamp(self.isqrt(self.add(variance, self.i64(eps_codes)), iterations), low=1)
        reciprocal = self.div_nonneg(self.i64(1 << reciprocal_bits), std)
        return self.shift_round(self.mul(centred, reciprocal), reciprocal_bits - ln_frac_bits)
