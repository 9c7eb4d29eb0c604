"""Drill output: terminal table, JSON document (every raw sample), timeline PNGs and an index.md."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from generators.drill.analysis import FaultTimes, nexthop_counts
from generators.drill.runner import DrillResult, RunResult
from generators.drill.samples import ControlRun, ProbeRun

REPORT_SCHEMA = "drill-report/1"
VERDICT_MARK = {"inside": "ok", "outside": "OUTSIDE", "not measured": "n/m", "no bound": "-", "info": "info"}


# ---------------------------------------------------------------- table


def table_rows(result: DrillResult) -> list[list[str]]:
    rows = []
    for run in result.runs:
        label = (
            f"{run.scenario}"
            + (f" {run.node}" if run.node else "")
            + (f" #{run.index + 1}" if len(result.runs) > 1 else "")
        )
        for r in run.rows:
            rows.append([label, r.measure, r.expected, r.measured, VERDICT_MARK.get(r.verdict, r.verdict)])
        if not run.verified_after:
            rows.append([label, "verify after", "pass", "FAIL", "OUTSIDE"])
        for err in run.errors:
            rows.append([label, "error", "-", err[:60], "ERROR"])
    return rows


def render_table(results: list[DrillResult]) -> str:
    header = ["scenario", "measure", "expected", "measured", "verdict"]
    rows = [r for res in results for r in table_rows(res)]
    columns = zip(header, *rows, strict=False) if rows else ([h] for h in header)
    widths = [max(len(str(x)) for x in col) for col in columns]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    reasons = []
    for res in results:
        for run in res.runs:
            for r in run.rows:
                if r.verdict == "outside":
                    reasons.append(f"  {run.scenario} {r.measure}: outside {r.expected} -- {r.reason}")
    if reasons:
        out += ["", "Outside the bound (reason when known):"] + reasons
    if results and results[0].runs and results[0].runs[0].analysis is not None:
        a = results[0].runs[0].analysis
        out += [
            "",
            f"Probe interval {a.probe_interval:.2f} s (windows are reported to within it); "
            f"control-plane sample interval {a.sample_interval:.2f} s.",
        ]
    return "\n".join(out)


# ---------------------------------------------------------------- JSON


def _probe_json(p: ProbeRun | None) -> dict | None:
    if p is None:
        return None
    return {
        "rate": p.rate,
        "timeout": p.timeout,
        "t0": p.t0,
        "ended": p.ended,
        "attempts": [asdict(a) for a in p.attempts],
    }


def _control_json(c: ControlRun | None) -> dict | None:
    if c is None:
        return None
    return {
        "interval": c.interval,
        "t0": c.t0,
        "ended": c.ended,
        "unusable": [{"t": t, "errors": list(e)} for t, e in c.unusable],
        "samples": [
            {
                "t": s.t,
                "peers": s.peers,
                "errors": list(s.errors),
                "vips": {
                    role: {
                        "ip": v.ip,
                        "fib": list(v.fib),
                        "rib": list(v.rib) if v.frr else None,
                        "bgp": [asdict(p) for p in v.bgp] if v.frr else None,
                    }
                    for role, v in s.vips.items()
                },
            }
            for s in c.samples
        ],
    }


def run_json(run: RunResult) -> dict:
    return {
        "scenario": run.scenario,
        "node": run.node,
        "index": run.index,
        "run_id": run.run_id,
        "ok": run.ok,
        "verified_after": run.verified_after,
        "errors": run.errors,
        "fault": None if run.fault is None else asdict(run.fault),
        "inputs": None if run.inputs is None else run.inputs.to_json(),
        "gateway": None if run.gateway is None else run.gateway.to_json(),
        "bounds": None if run.bounds is None else run.bounds.to_json(),
        "analysis": None if run.analysis is None else run.analysis.to_json(),
        "rows": [r.to_json() for r in run.rows],
        "events": [{"t": t, "what": w} for t, w in run.events],
        "samples": {"probe": _probe_json(run.probe), "control": _control_json(run.control)},
    }


def report_json(results: list[DrillResult]) -> dict:
    return {
        "schema": REPORT_SCHEMA,
        "lab": results[0].lab if results else None,
        "fidelity": results[0].fidelity if results else None,
        "ok": all(r.ok for r in results),
        "runs": [run_json(run) for res in results for run in res.runs],
    }


# ---------------------------------------------------------------- plots

NODE_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
FAIL_COLOR = "#d62728"


def _probe_panel(ax, probe: ProbeRun, vip: str, nodes: list[str], t0: float) -> None:
    attempts = probe.of(vip)
    rows = nodes + ["failed"]
    for i, node in enumerate(nodes):
        xs = [a.t_start - t0 for a in attempts if a.ok and a.node == node]
        ax.scatter(xs, [i] * len(xs), s=10, marker="|", color=NODE_COLORS[i % len(NODE_COLORS)], linewidths=1.2)
    fails = [a for a in attempts if not a.ok]
    ax.scatter(
        [a.t_start - t0 for a in fails], [len(nodes)] * len(fails), s=18, marker="x", color=FAIL_COLOR, linewidths=1.0
    )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    n_fail = len(fails)
    ax.set_ylabel(f"{vip}\nanswered by", fontsize=9)
    ax.text(
        1.0,
        1.02,
        f"{n_fail} of {len(attempts)} attempts failed",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
        color=FAIL_COLOR if n_fail else "#333333",
    )
    ax.grid(axis="x", alpha=0.3)


def _nexthop_panel(ax, control: ControlRun, t0: float) -> None:
    styles = {"traefik": "-", "apiserver": "--"}
    top = 1
    stale_drawn = False
    for role in sorted({r for s in control.samples for r in s.vips}):
        series = nexthop_counts(control.samples, role)
        if not series:
            continue
        ts = [t - t0 for t, *_ in series]
        ls = styles.get(role, ":")
        # BGP drawn wide and pale underneath, the FIB thin on top: where they differ, both show
        ax.step(
            ts,
            [b for _, b, _, _ in series],
            where="post",
            color="#ff7f0e",
            linestyle=ls,
            linewidth=4,
            alpha=0.45,
            label=f"BGP next-hops ({role})",
        )
        ax.step(
            ts,
            [f for _, _, f, _ in series],
            where="post",
            color="#1f77b4",
            linestyle=ls,
            linewidth=1.4,
            label=f"FIB next-hops ({role})",
        )
        stale = [s for _, _, _, s in series]
        if any(stale) and not stale_drawn:  # the same node's paths go stale for every VIP: draw once
            stale_drawn = True
            ax.fill_between(ts, 0, stale, step="post", color="#ffbb78", alpha=0.6, label=f"stale paths ({role})")
        known = [int(b) for _, b, _, _ in series if b == b]  # NaN != NaN: FRR silent in that sample
        top = max(top, max(known, default=0), max(f for _, _, f, _ in series))
    ax.set_ylim(-0.2, top + 0.6)
    ax.set_yticks(range(0, top + 1))
    ax.set_ylabel("next-hops\nat gateway", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, framealpha=0.9)
    ax.grid(alpha=0.3)


def _mark_fault(ax, fault: FaultTimes, t0: float, detect: float | None, recovery: float | None) -> None:
    end = fault.end - t0
    ax.axvspan(0, end, color=FAIL_COLOR, alpha=0.07)
    ax.axvline(0, color=FAIL_COLOR, linewidth=1.2)
    ax.axvline(end, color="#2ca02c", linewidth=1.2)
    if detect is not None:
        ax.axvline(detect, color="#ff7f0e", linewidth=1.0, linestyle=":")
    if recovery is not None:
        ax.axvline(end + recovery, color="#1f77b4", linewidth=1.0, linestyle=":")


def plot_run(run: RunResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if run.probe is None or run.control is None or run.fault is None:
        raise ValueError(f"run {run.run_id} has no samples to plot")
    t0 = run.fault.inject_start
    vips = sorted({a.vip for a in run.probe.attempts}, key=lambda v: (v != "traefik", v))
    nodes = sorted({a.node for a in run.probe.attempts if a.node})
    fig, axes = plt.subplots(
        len(vips) + 1,
        1,
        sharex=True,
        figsize=(12, 2.2 * (len(vips) + 1) + 0.8),
        gridspec_kw={"height_ratios": [1.0] * len(vips) + [1.1]},
    )
    m = run.analysis.measurements if run.analysis else {}
    detect = m["detect"].value if "detect" in m and isinstance(m["detect"].value, float) else None
    recovery = m["recovery"].value if "recovery" in m and isinstance(m["recovery"].value, float) else None
    for ax, vip in zip(axes, vips, strict=False):
        _probe_panel(ax, run.probe, vip, nodes, t0)
        _mark_fault(ax, run.fault, t0, detect, recovery)
    _nexthop_panel(axes[-1], run.control, t0)
    _mark_fault(axes[-1], run.fault, t0, detect, recovery)
    axes[-1].set_xlabel("seconds since the fault started")
    verdicts = [r for r in run.rows if r.verdict in ("inside", "outside")]
    bad = [r for r in verdicts if r.verdict == "outside"]
    headline = (
        f"{run.scenario}"
        + (f" on {run.node}" if run.node else "")
        + (
            f" -- {len(bad)} measure(s) OUTSIDE the bound"
            if bad
            else f" -- all {len(verdicts)} bounded measures inside"
        )
    )
    for r in bad[:3]:
        headline += f"\n{r.measure}: {r.measured.split(' [')[0]}, expected {r.expected}"
    fig.suptitle(headline, fontsize=11, color=FAIL_COLOR if bad else "#222222", x=0.01, ha="left")
    legend = (
        "red band: fault (red line start, green line end)   orange dotted: next-hop gone / detected   "
        "blue dotted: recovered   x: failed attempt"
    )
    fig.text(0.01, 0.005, legend, fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # tight_layout already leaves room for the suptitle
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- report directory


def write_report(results: list[DrillResult], out_dir: Path) -> Path:
    """Write report.json, one PNG per run and index.md into ``out_dir``; returns index.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = report_json(results)
    tmp = out_dir / "report.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, out_dir / "report.json")
    title = f"# Drill report: lab {doc['lab']} ({doc['fidelity']} fidelity)"
    lines = [title, "", "```", render_table(results), "```", ""]
    for res in results:
        for run in res.runs:
            name = f"{run.run_id}.png"
            title = f"{run.scenario}" + (f" on {run.node}" if run.node else "") + f", run {run.index + 1}"
            if run.probe is not None and run.control is not None and run.fault is not None:
                plot_run(run, out_dir / name)
                lines += [f"## {title}", "", f"![{title}]({name})", ""]
            else:
                lines += [f"## {title}", "", "No samples (the run stopped early): " + "; ".join(run.errors), ""]
            for r in run.rows:
                if r.verdict == "outside":
                    lines.append(f"- **{r.measure}** measured {r.measured}, expected {r.expected}: {r.reason}")
            lines.append("")
    lines += ["Raw samples and every bound with its reason: [report.json](report.json)", ""]
    index = out_dir / "index.md"
    index.write_text("\n".join(lines), encoding="utf-8")
    return index
