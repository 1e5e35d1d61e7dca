"""Turns ``results/latest.json`` into ``docs/benchmarks.md`` and a PNG plot of the ratios to kiln."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.frameworks import FRAMEWORKS

BASE = "kiln"


def _rows(report: dict):
    """Yield ``(workload, variant, {framework: entry-or-cell})`` in the report's order."""
    for wl, w in report["workloads"].items():
        variants: list[str] = []
        for cell in w["results"].values():
            variants += [v for v in cell.get("variants", {}) if v not in variants]
        for v in variants:
            yield wl, v, {fw: cell for fw, cell in w["results"].items()}


def _metric(entry: dict) -> tuple[float, str] | None:
    if "rate" in entry:
        return entry["rate"]["value"], entry["rate"]["unit"]
    if "per" in entry:
        return entry["per"]["value"], entry["per"]["unit"]
    if "median_s" in entry:
        return entry["median_s"] * 1e3, "ms"
    return None


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def speedup(entries: dict, fw: str) -> float | None:
    """kiln's median time over ``fw``'s: above 1, ``fw`` is faster than kiln."""
    base, other = entries.get(BASE, {}), entries.get(fw, {})
    if "median_s" in base and "median_s" in other and other["median_s"] > 0:
        return base["median_s"] / other["median_s"]
    return None


def write_markdown(report: dict, path: Path) -> None:
    fws = [fw for fw in FRAMEWORKS if any(fw in w["results"] for w in report["workloads"].values())]
    errors: list[str] = []
    lines = [
        "# Benchmarks",
        "",
        "kiln against MLX, JAX, PyTorch and plain NumPy on the same workloads, produced by",
        "`python benchmarks/run.py` (see `benchmarks/README.md` in the repository).",
        "",
        f"- Date: {report['date']}; sizes: **{report['size']}**; device: {'GPU' if report['gpu'] else 'CPU'}",
        f"- CPU: {report['cpu']}, {report['cores']} logical cores; {report['platform']}",
        "- Versions: " + "; ".join(
            f"{fw} " + ", ".join(f"{k} {v}" for k, v in (vers or {}).items() if k != "python")
            for fw, vers in report["versions"].items()) + "; Python "
        + next((v.get("python", "?") for v in report["versions"].values() if v), "?"),
        "",
        "Each cell is the median of the timed runs (after a warm-up that also compiles), in the row's",
        "unit, and in parentheses the **speed relative to kiln** (kiln's median time divided by the",
        "framework's: above 1 the framework is faster than kiln, below 1 slower). ✗ marks a result",
        "that disagreed with the reference in the check run before timing; `error` cells are listed",
        "below the table. *load* is the mean 1-minute load average during the row's measurements:",
        f"the machine has {report['cores']} cores and is shared, so rows measured at a high load are noisy.",
        "",
        "| workload | variant | unit | " + " | ".join(fws) + " | load |",
        "|---|---|---|" + "---:|" * len(fws) + "---:|",
    ]
    plot_rows = []
    for wl, variant, cells in _rows(report):
        entries = {fw: cells.get(fw, {}).get("variants", {}).get(variant, {}) for fw in fws}
        unit = next((m[1] for e in entries.values() if (m := _metric(e))), "")
        row, loads = [], []
        for fw in fws:
            cell, e = cells.get(fw, {}), entries[fw]
            if "error" in e or ("error" in cell and "median_s" not in e and "memory" not in e):
                errors.append(f"- `{wl}` / `{variant}` on **{fw}**: {e.get('error') or cell['error']}")
                row.append("error")
                continue
            m = _metric(e)
            if m is None:
                row.append("—")
                continue
            text = _fmt(m[0])
            s = speedup(entries, fw)
            if s is not None and fw != BASE:
                text += f" ({s:.2g}×)"
            if not e.get("check", {}).get("ok", True):
                text += " ✗"
            row.append(text)
            loads += e.get("load1", [])
        lines.append(f"| {wl} | {variant} | {unit} | " + " | ".join(row) + f" | {statistics.mean(loads):.1f} |"
                     if loads else f"| {wl} | {variant} | {unit} | " + " | ".join(row) + " | |")
        ratios = {fw: s for fw in fws if fw != BASE and (s := speedup(entries, fw)) is not None}
        if ratios:
            plot_rows.append((f"{wl} / {variant}", ratios))

    lines += _memory_section(report, fws) + _eltwise_section(report) + _checks_section(report, fws)
    if plot_rows:
        png = path.with_suffix(".png")
        _plot(plot_rows, fws, png)
        lines += ["", "## Speed relative to kiln", "", f"![speed relative to kiln]({png.name})", "",
                  "Log scale; a bar to the right of 1 is faster than kiln. Rows where kiln has no",
                  "number are left out."]
    if errors:
        lines += ["", "## Errors", "", *errors]
    lines += ["", "The raw numbers (min/max, repeat counts, warm-up times, loads) are in",
              "`benchmarks/results/latest.json`.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _memory_section(report: dict, fws: list[str]) -> list[str]:
    w = report["workloads"].get("checkpoint_memory")
    if not w:
        return []
    p = w["params"]
    lines = ["", "## Gradient checkpointing: peak memory", "",
             f"Gradient of a {p['layers']}-layer tanh MLP (width {p['width']}, batch {p['batch']}): no",
             "checkpoint, the whole function checkpointed, and every 4th / 8th layer output kept",
             "(kiln: `mx.checkpoint(forward, interval=k)`; MLX and JAX: k-layer segments checkpointed;",
             "PyTorch: `checkpoint_sequential`). *alloc*: the framework allocator's peak above",
             "what was live before (`mx.get_peak_memory`, kiln and MLX only); *rss*: the rise of the",
             "process's peak resident set (VmHWM reset through `/proc/self/clear_refs`; includes allocator",
             "caching and can read 0 when freed memory is reused). MiB.", "",
             "| variant | " + " | ".join(f"{fw} alloc | {fw} rss" for fw in fws if fw != "numpy") + " |",
             "|---|" + "---:|---:|" * len([fw for fw in fws if fw != "numpy"])]
    variants = list(next(iter(w["results"].values()), {}).get("variants", {})) or ["no checkpoint"]
    for variant in variants:
        cells = []
        for fw in fws:
            if fw == "numpy":
                continue
            mem = w["results"].get(fw, {}).get("variants", {}).get(variant, {}).get("memory", {})
            cells += [f"{mem[k] / 2**20:.1f}" if mem.get(k) is not None else "—" for k in ("alloc", "rss")]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def _eltwise_section(report: dict) -> list[str]:
    w = report["workloads"].get("eltwise")
    if not w:
        return []
    copies = [e["copy_GBps"] for c in w["results"].values() for e in c.get("variants", {}).values()
              if "copy_GBps" in e]
    if not copies:
        return []
    return ["", f"For `eltwise`, a NumPy memory copy of the same array (read + write) ran at "
            f"{statistics.median(copies):.1f} GB/s (median over the workers; range "
            f"{min(copies):.1f}-{max(copies):.1f}), the bandwidth a single fused pass could reach."]


def _checks_section(report: dict, fws: list[str]) -> list[str]:
    lines = ["", "## Agreement checks", "",
             "Before timing, each framework computed the same quantity from the same NumPy-made weights",
             "(a loss before and after one optimizer step, gradients, a Hessian-vector product, outputs);",
             "the table gives the largest error relative to the largest magnitude of the reference",
             "(NumPy where it has a version, else MLX).", "",
             "| workload | variant | " + " | ".join(fws) + " |", "|---|---|" + "---:|" * len(fws)]
    for wl, variant, cells in _rows(report):
        row = []
        for fw in fws:
            c = cells.get(fw, {}).get("variants", {}).get(variant, {}).get("check")
            row.append("—" if c is None else f"{'✓' if c['ok'] else '✗'} {c['rel_err']:.1e}")
        lines.append(f"| {wl} | {variant} | " + " | ".join(row) + " |")
    return lines


def _plot(rows: list, fws: list[str], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [fw for fw in fws if fw != BASE]
    height = 0.8 / max(len(others), 1)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) * max(len(others), 2) / 2 + 1.5))
    for k, fw in enumerate(others):
        ys = [i + k * height for i, (_, r) in enumerate(rows) if fw in r]
        xs = [r[fw] for _, r in rows if fw in r]
        # Bars grow from 1 (as fast as kiln): right is faster, left is slower.
        ax.barh(ys, [x - 1 for x in xs], height=height, label=fw, left=1)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], [name for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("speed relative to kiln (kiln time / framework time, log scale)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # re-render the Markdown from a results file
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent.parent / "docs" / "benchmarks.md"
    write_markdown(json.loads(src.read_text()), dst)
