"""What ``bench.scale`` measured, summarised: runs, medians, the ideal, goals, tables, plot and JSON.

Pure functions over the run records, so that tests can check them on fabricated runs. The
ideal of a pool is the issue's: the pool's work spread evenly over its capacity, plus one chunk
(the longest, on the fastest node), because a chunk is never split between nodes::

    ideal = audio_s * rtf / capacity + longest_chunk_s * rtf      capacity = fast + slow / slowdown

``schedule_s`` is the makespan that the hub's own rule (a free node takes the next chunk,
fastest first) would reach with no overhead at all, on the same chunks.
"""

from __future__ import annotations

import heapq
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.accuracy import Run as RealRun
from bench.accuracy import Summary as RealSummary
from bench.accuracy import machine_info

GOALS = {
    "real_2_nodes_speedup": 1.8,  #: at least: 2 nodes on 2 cores against the whole file on one
    "efficiency_32": 0.90,  #: at least: share of the ideal speed-up with 32 simulated nodes
    "efficiency_64": 0.85,
    "hetero_over_ideal": 0.10,  #: at most: a mixed pool's time over its ideal
    "hub_cpu_ms_per_chunk": 5.0,  #: under
    "hub_peak_rss_mb": 300.0,  #: under, on a two-hour recording
}
TWO_HOURS_S = 7200.0


@dataclass
class SimRun:
    """One job through ``nodes`` simulated nodes (``slow`` of them ``slowdown`` times slower)."""

    kind: str  #: "nodes" (all alike) or "hetero"
    nodes: int
    repeat: int
    audio_s: float
    rtf: float  #: of the fast nodes
    chunks: int
    longest_chunk_s: float
    wall_s: float  #: from submit (cutting included) to the finished job
    ideal_s: float
    schedule_s: float  #: the hub's rule with no overhead
    hub_cpu_s: float  #: the hub process's CPU (every thread) over the job, cutting included
    failed_chunks: int = 0
    slow: int = 0
    slowdown: float = 1.0
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  #: step -> count, cpu_s, wall_s
    overhead_ms: float = 0.0  #: median per chunk: round trip at the hub minus the node's own time
    per_node: dict[str, int] = field(default_factory=dict)  #: chunks done per node


@dataclass
class MemoryRun:
    """``python -m hub transcribe`` of a long recording, measured from outside."""

    audio_s: float
    nodes: int
    repeat: int
    wall_s: float
    peak_rss_mb: float  #: the hub process's own high-water mark (VmHWM), its children not included
    chunks: int
    exit_code: int


@dataclass
class SimSummary:
    kind: str
    nodes: int
    slow: int
    runs: int
    audio_s: float
    rtf: float
    chunks: float
    wall_s: float
    ideal_s: float
    schedule_s: float
    speedup: float  #: the serial work (audio x rtf) over the wall time
    ideal_speedup: float
    efficiency: float  #: ideal_s / wall_s: the share of the ideal speed-up reached
    hub_cpu_ms_per_chunk: float
    overhead_ms: float
    failed_chunks: float


# --- the ideal ------------------------------------------------------------------------------


def capacity(nodes: int, slow: int = 0, slowdown: float = 1.0) -> float:
    """How many fast nodes the pool is worth."""
    return (nodes - slow) + slow / slowdown


def ideal_s(audio_s: float, rtf: float, longest_chunk_s: float, nodes: int, slow: int = 0, slowdown: float = 1.0) -> float:
    return audio_s * rtf / capacity(nodes, slow, slowdown) + longest_chunk_s * rtf


def schedule_s(chunk_s: list[float], rtfs: list[float]) -> float:
    """Makespan when each chunk, in order, goes to the node free first (the fastest among equals), no overhead."""
    free = [(0.0, rtf, i) for i, rtf in enumerate(sorted(rtfs))]
    heapq.heapify(free)
    end = 0.0
    for duration in chunk_s:
        at, rtf, i = heapq.heappop(free)
        done = at + duration * rtf
        end = max(end, done)
        heapq.heappush(free, (done, rtf, i))
    return end


# --- summary --------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(runs: list[SimRun]) -> list[SimSummary]:
    """Medians over the repeats of each (kind, nodes, slow), in first-seen order."""
    groups: dict[tuple[str, int, int], list[SimRun]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.nodes, run.slow), []).append(run)
    rows = []
    for (kind, nodes, slow), group in groups.items():
        first = group[0]
        wall = _median([r.wall_s for r in group])
        ideal = _median([r.ideal_s for r in group])
        work = first.audio_s * first.rtf
        chunks = _median([r.chunks for r in group])
        rows.append(SimSummary(
            kind=kind, nodes=nodes, slow=slow, runs=len(group), audio_s=first.audio_s, rtf=first.rtf, chunks=chunks,
            wall_s=wall, ideal_s=ideal, schedule_s=_median([r.schedule_s for r in group]),
            speedup=work / wall if wall > 0 else 0.0, ideal_speedup=work / ideal if ideal > 0 else 0.0,
            efficiency=ideal / wall if wall > 0 else 0.0,
            hub_cpu_ms_per_chunk=_median([1000 * r.hub_cpu_s / r.chunks for r in group if r.chunks]),
            overhead_ms=_median([r.overhead_ms for r in group]),
            failed_chunks=_median([r.failed_chunks for r in group]),
        ))
    return rows


def step_costs(runs: list[SimRun]) -> dict[str, dict[str, float]]:
    """Per step, CPU and wall milliseconds per chunk: the median over the runs of ``kind`` "nodes"."""
    names = sorted({name for r in runs for name in r.steps})
    out: dict[str, dict[str, float]] = {}
    for name in names:
        cpu, wall = [], []
        for r in runs:
            step = r.steps.get(name)
            if step and r.chunks:
                cpu.append(1000 * step["cpu_s"] / r.chunks)
                wall.append(1000 * step["wall_s"] / r.chunks)
        out[name] = {"cpu_ms": _median(cpu), "wall_ms": _median(wall)}
    return out


def goals(real: list[RealSummary], sims: list[SimSummary], memory: list[MemoryRun]) -> list[dict[str, Any]]:
    """Each goal that this run measured: what, the bar, the value, and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(what: str, bar: str, value: float, met: bool, unit: str = "") -> None:
        out.append({"goal": what, "bar": bar, "value": round(value, 3), "unit": unit, "met": met})

    for row in real:
        if row.mode == "distributed" and row.nodes == 2 and row.speedup is not None:
            add("real engine, 2 nodes vs whole file on one", f">= {GOALS['real_2_nodes_speedup']}x",
                row.speedup, row.speedup >= GOALS["real_2_nodes_speedup"], "x")
    for row in sims:
        key = f"efficiency_{row.nodes}"
        if row.kind == "nodes" and key in GOALS:
            add(f"simulated, {row.nodes} nodes: share of the ideal speed-up", f">= {GOALS[key]:.0%}",
                100 * row.efficiency, row.efficiency >= GOALS[key], "%")
        if row.kind == "hetero":
            over = row.wall_s / row.ideal_s - 1 if row.ideal_s else 0.0
            add(f"heterogeneous pool ({row.nodes - row.slow} fast + {row.slow} slow): time over its ideal",
                f"<= {GOALS['hetero_over_ideal']:.0%}", 100 * over, over <= GOALS["hetero_over_ideal"], "%")
    cpu = [r.hub_cpu_ms_per_chunk for r in sims if r.kind == "nodes"]
    if cpu:
        worst = max(cpu)
        add("hub CPU per chunk (worst pool)", f"< {GOALS['hub_cpu_ms_per_chunk']:g} ms", worst,
            worst < GOALS["hub_cpu_ms_per_chunk"], "ms")
    if memory:
        worst = max(memory, key=lambda m: m.peak_rss_mb)  # the highest of the repeats
        add(f"hub peak memory, {worst.audio_s / 3600:.2g} h recording", f"< {GOALS['hub_peak_rss_mb']:g} MB (2 h)",
            worst.peak_rss_mb, worst.peak_rss_mb < GOALS["hub_peak_rss_mb"], "MB")
    return out


# --- tables ---------------------------------------------------------------------------------


def _pool(row: SimSummary) -> str:
    if row.kind == "hetero":
        return f"{row.nodes - row.slow} fast + {row.slow} slow"
    return f"{row.nodes}"


def sim_table(rows: list[SimSummary]) -> str:
    lines = [
        "| nodes | chunks | wall s | ideal s | no-overhead schedule s | speed-up | ideal speed-up | share of ideal "
        "| hub CPU ms/chunk | round-trip overhead ms/chunk |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {_pool(r)} | {r.chunks:g} | {r.wall_s:.2f} | {r.ideal_s:.2f} | {r.schedule_s:.2f} | {r.speedup:.2f}× "
            f"| {r.ideal_speedup:.2f}× | {100 * r.efficiency:.1f} % | {r.hub_cpu_ms_per_chunk:.2f} | {r.overhead_ms:.1f} |"
        )
    return "\n".join(lines)


def steps_table(steps: dict[str, dict[str, float]]) -> str:
    lines = ["| step | CPU ms per chunk | wall ms per chunk |", "|---|--:|--:|"]
    for name, cost in steps.items():
        lines.append(f"| {name} | {cost['cpu_ms']:.3f} | {cost['wall_ms']:.3f} |")
    return "\n".join(lines)


def memory_table(runs: list[MemoryRun]) -> str:
    lines = ["| recording | nodes | chunks | wall s | hub peak RSS MB |", "|---|--:|--:|--:|--:|"]
    for m in runs:
        lines.append(f"| {m.audio_s / 60:.0f} min | {m.nodes} | {m.chunks} | {m.wall_s:.1f} | {m.peak_rss_mb:.0f} |")
    return "\n".join(lines)


def goals_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| goal | bar | measured | met |", "|---|---|--:|---|"]
    for g in rows:
        unit = {"x": "×", "%": " %", "ms": " ms", "MB": " MB"}.get(g["unit"], "")
        lines.append(f"| {g['goal']} | {g['bar']} | {g['value']:.2f}{unit} | {'yes' if g['met'] else '**no**'} |")
    return "\n".join(lines)


# --- plot and JSON --------------------------------------------------------------------------


def plot(rows: list[SimSummary], path: Path) -> bool:
    """Speed-up against nodes, beside the ideal and linear, as a PNG. False if matplotlib is missing."""
    uniform = [r for r in rows if r.kind == "nodes"]
    if not uniform:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    nodes = [r.nodes for r in uniform]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ax.plot(nodes, nodes, ":", color="grey", label="linear (N)")
    ax.plot(nodes, [r.ideal_speedup for r in uniform], "--", color="tab:green", label="ideal: audio×RTF/N + one chunk")
    ax.plot(nodes, [r.speedup for r in uniform], "o-", color="tab:blue", label="measured (median)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(nodes, [str(n) for n in nodes])
    ticks = [2**i for i in range(0, 7) if 2**i <= max(nodes)]
    ax.set_yticks(ticks, [str(t) for t in ticks])
    first = uniform[0]
    ax.set_title(f"Simulated nodes: {first.audio_s / 60:.0f} min of speech, RTF {first.rtf:g}")
    ax.set_xlabel("edge nodes")
    ax.set_ylabel("speed-up over one node's engine time")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def save(path: Path, settings: dict[str, Any], real: list[RealRun], real_rows: list[RealSummary],
         sims: list[SimRun], memory: list[MemoryRun], extra: dict[str, Any]) -> dict[str, Any]:
    rows = summarise(sims)
    doc = {
        "machine": machine_info(),
        "settings": settings,
        "goals": goals(real_rows, rows, memory),
        "real": {"summary": [asdict(r) for r in real_rows], "runs": [asdict(r) for r in real]},
        "simulated": {"summary": [asdict(r) for r in rows], "steps": step_costs([s for s in sims if s.kind == "nodes"]),
                      "runs": [asdict(r) for r in sims]},
        "memory": [asdict(m) for m in memory],
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return doc
