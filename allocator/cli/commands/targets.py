"""`mixbit targets [TARGET] [--json]`: list the shipped targets with their budgets and estimated utilisation.

With a TARGET (a shipped name or a TOML path) it shows that one target, its resource breakdown per component
and the source of every number.
"""

from __future__ import annotations

import argparse
from typing import Any

from allocator.cli.args import add_json_argument

__all__ = ["register", "target_summary"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("targets", help="list shipped targets with their budgets")
    parser.add_argument("target", nargs="?", help="show one target (shipped name or TOML path) in detail")
    add_json_argument(parser)
    parser.set_defaults(func=run)


def target_summary(target: Any, *, detail: bool = False) -> dict[str, Any]:
    """One target as a JSON-able dict: budgets, array, bandwidth, estimated resources, utilisation, fits."""
    from sim.resources import RESOURCE_NAMES, estimate_resources

    acc = target.accelerator
    resources = estimate_resources(target)
    summary: dict[str, Any] = {
        "name": target.name,
        "description": target.description,
        "device_kind": target.device.kind,
        "part": target.device.part,
        "clock_mhz": target.clock_mhz,
        "rows": acc.rows,
        "cols": acc.cols,
        "dataflow": acc.dataflow,
        "pe": acc.pe,
        "weight_bits": list(acc.weight_bits),
        "act_bits": list(acc.act_bits),
        "vector_lanes": acc.vector_lanes,
        "device": {name: getattr(target.device, name) for name in RESOURCE_NAMES},
        "sram_bytes": target.device.sram_bytes,
        "caps": {name: getattr(target.caps, name) for name in RESOURCE_NAMES},
        "memory": {
            "kind": target.memory.kind,
            "bandwidth_gbps": target.memory.bandwidth_gbps,
            "channels": target.memory.channels,
            "controller": target.memory.controller,
        },
        "bytes_per_cycle": target.bytes_per_cycle,
        "buffers_bytes": {
            "ifmap": acc.buffers.ifmap_bytes,
            "filter": acc.buffers.filter_bytes,
            "ofmap": acc.buffers.ofmap_bytes,
        },
        "resources": resources.to_dict(),
        "utilisation": resources.utilisation(),
        "fits": bool(resources.fits),
    }
    if detail:
        summary["breakdown"] = [{"component": part.component, **part.to_dict()} for part in resources.breakdown]
        summary["sources"] = dict(target.sources)
    return summary


def run(args: argparse.Namespace) -> int:
    from allocator.cli.main import emit_json
    from sim.target_file import list_targets, load_target

    if args.target is not None:
        summaries = [target_summary(load_target(args.target), detail=True)]
    else:
        summaries = [target_summary(load_target(name)) for name in list_targets()]
    if args.json:
        emit_json({"targets": summaries})
        return 0
    print(_table(summaries))
    if args.target is not None:
        print()
        print(_detail(summaries[0]))
    return 0


def _peak_utilisation(summary: dict[str, Any]) -> str:
    name, value = max(summary["utilisation"].items(), key=lambda item: item[1])
    return f"{value:.0%} {name}"


def _bits(values: list[int]) -> str:
    return ",".join(map(str, values))


def _table(summaries: list[dict[str, Any]]) -> str:
    headers = [
        "target",
        "part",
        "MHz",
        "array",
        "df",
        "pe",
        "wbits",
        "abits",
        "LUT",
        "FF",
        "DSP",
        "BRAM36",
        "URAM",
        "GB/s",
        "peak use",
        "fits",
    ]
    rows = []
    for s in summaries:
        device = s["device"]
        budget = (
            [f"{device[name]:,}" for name in ("lut", "ff", "dsp", "bram36", "uram")]
            if s["device_kind"] == "fpga"
            else ["asic", "-", "-", f"{s['sram_bytes'] // 1024} KiB", "-"]
        )
        rows.append(
            [
                s["name"],
                s["part"] if len(s["part"]) <= 24 else s["part"][:23] + "…",
                f"{s['clock_mhz']:g}",
                f"{s['rows']}x{s['cols']}",
                s["dataflow"],
                s["pe"],
                _bits(s["weight_bits"]),
                _bits(s["act_bits"]),
                *budget,
                f"{s['memory']['bandwidth_gbps']:g}",
                _peak_utilisation(s),
                "yes" if s["fits"] else "NO",
            ]
        )
    numeric = {"MHz", "LUT", "FF", "DSP", "BRAM36", "URAM", "GB/s", "peak use"}
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(cells, widths, headers, strict=True)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    out.append("")
    out.append("LUT..URAM: device counts (an asic reference shows its SRAM). peak use: estimated use of the most used")
    out.append("resource (FPGA) or of SRAM (asic). fits: every estimate under device count x cap (`mixbit targets T`).")
    return "\n".join(out)


def _detail(summary: dict[str, Any]) -> str:
    lines = [f"{summary['name']}: {summary['description']}"]
    lines.append(f"{'component':<18}{'DSP':>8}{'LUT':>11}{'FF':>11}{'BRAM36':>8}{'URAM':>6}")
    for part in [*summary["breakdown"], {"component": "total", **summary["resources"]}]:
        lines.append(
            f"{part['component']:<18}{part['dsp']:>8,}{part['lut']:>11,}{part['ff']:>11,}"
            f"{part['bram36']:>8,}{part['uram']:>6,}"
        )
    use = ", ".join(f"{name} {value:.1%}" for name, value in summary["utilisation"].items())
    lines.append(f"utilisation: {use}; fits: {'yes' if summary['fits'] else 'NO'}")
    lines.append("sources:")
    lines.extend(f"  {key}: {text}" for key, text in summary["sources"].items())
    return "\n".join(lines)
