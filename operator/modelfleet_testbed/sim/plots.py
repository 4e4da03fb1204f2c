"""PNG plots of a simulation: load and replicas over time, waiting queue over time, SLO
attainment and GPUs hour by hour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from modelfleet_testbed.sim.daily import Hour
from modelfleet_testbed.sim.outcome import ReplayResult
from modelfleet_testbed.sim.workload import Workload

MAX_POINTS = 2000


def _axis(duration: float) -> tuple[float, str]:
    if duration > 2 * 86400:
        return 86400.0, "days"
    return (3600.0, "hours") if duration > 2 * 3600 else (60.0, "minutes")


def _thin(xs: list[float], ys: list, limit: int = MAX_POINTS) -> tuple[list[float], list]:
    """At most about `limit` points, each the largest of its stretch, so peaks stay."""
    step = max(1, -(-len(xs) // limit))
    return xs[::step], [max(ys[i : i + step]) for i in range(0, len(ys), step)]


def _arrival_rate(workload: Workload, duration: float) -> tuple[list[float], list[float]]:
    bucket = max(5.0, duration / 200)
    counts = [0] * (int(duration // bucket) + 1)
    for t in workload.arrivals.times:
        counts[int(t // bucket)] += 1
    return [i * bucket for i in range(len(counts))], [c / bucket for c in counts]


def _attainment_plot(plt, out: Path, hours: Mapping[str, Sequence[Hour]], start_label: str):
    """Hourly SLO attainment and GPUs per run; ramp hours shaded, days marked with their
    attainment."""
    first = next(iter(hours.values()))
    figure, axes = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True)
    origin = first[0].begin if first else 0.0
    for run, run_hours in hours.items():
        xs = [(h.begin - origin) / 3600 for h in run_hours]
        for axis, values in (
            (axes[0], [h.ttft for h in run_hours]),
            (axes[1], [h.e2e for h in run_hours]),
        ):
            points = [(x, 100 * v) for x, v in zip(xs, values, strict=True) if v is not None]
            if points:
                axis.step(*zip(*points, strict=True), where="post", label=run, linewidth=1)
        gpus = [h.gpu_seconds / max(1.0, h.end - h.begin) for h in run_hours]
        axes[2].step(xs, gpus, where="post", label=run, linewidth=1)
    for hour in first:
        if hour.ramp:
            for axis in axes:
                axis.axvspan(
                    (hour.begin - origin) / 3600,
                    (hour.end - origin) / 3600,
                    color="orange",
                    alpha=0.15,
                    linewidth=0,
                )
        if hour.start.hour == 0 and hour.begin > origin:
            for axis in axes:
                axis.axvline((hour.begin - origin) / 3600, color="grey", linewidth=0.6)
    axes[0].set_ylabel("TTFT SLO met %")
    axes[1].set_ylabel("e2e SLO met %")
    axes[2].set_ylabel("GPUs held")
    for axis in axes[:2]:
        low = min([99.0] + [line.get_ydata().min() for line in axis.get_lines()])
        axis.set_ylim(max(0.0, low - 1), 100.5)
        axis.axhline(99, color="red", linewidth=0.6, linestyle="--")
    axes[0].set_title("SLO attainment per hour (ramp hours shaded, 99% dashed)")
    axes[0].legend(loc="lower right", fontsize="small")
    axes[-1].set_xlabel(f"hours since {start_label}")
    figure.tight_layout()
    path = out / "attainment.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_plots(
    out: Path,
    results: Mapping[str, ReplayResult],
    workload: Workload,
    start_label: str,
    hours: Mapping[str, Sequence[Hour]] | None = None,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    first = next(iter(results.values()))
    variants = first.variants
    unit, unit_name = _axis(first.duration)
    xlabel = f"{unit_name} since {start_label}"
    paths = []

    figure, axes = plt.subplots(
        len(variants) + 1, 1, figsize=(11, 2.2 * (len(variants) + 1)), sharex=True
    )
    xs, rate = _arrival_rate(workload, first.duration)
    axes[0].plot([x / unit for x in xs], rate, color="black", linewidth=0.8)
    axes[0].set_ylabel("requests/s")
    axes[0].set_title("Arrivals and replicas (holding GPUs) per variant")
    for v, name in enumerate(variants):
        axis = axes[v + 1]
        for run, result in results.items():
            times = [p.t / unit for p in result.series]
            xs_run, ys = _thin(times, [p.allocated[v] for p in result.series])
            axis.step(xs_run, ys, where="post", label=run, linewidth=1)
        axis.set_ylabel(f"{name}\nreplicas")
        axis.set_ylim(bottom=0, top=max(1.0, axis.get_ylim()[1]))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel(xlabel)
    figure.tight_layout()
    paths.append(out / "replicas.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(len(variants), 1, figsize=(11, 2.2 * len(variants)), sharex=True)
    axes = list(axes) if len(variants) > 1 else [axes]
    axes[0].set_title("Waiting requests per variant (as the planner saw them)")
    for v, name in enumerate(variants):
        axis = axes[v]
        for run, result in results.items():
            points = [p for p in result.series if p.waiting[v] is not None]
            xs_run, ys = _thin([p.t / unit for p in points], [p.waiting[v] for p in points])
            axis.plot(xs_run, ys, label=run, linewidth=1)
        axis.set_ylabel(f"{name}\nwaiting")
        axis.set_ylim(bottom=0, top=max(1.0, axis.get_ylim()[1]))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel(xlabel)
    figure.tight_layout()
    paths.append(out / "queue.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)
    if hours:
        paths.append(_attainment_plot(plt, out, hours, start_label))
    return paths
