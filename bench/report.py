"""The bench's verdicts: each of issue 5's targets beside what a run measured, and, over repeated runs, how often
each target was met. The figures themselves come from bench.run; this only reads them."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One target: what it checks, how to read the figure from a run's results, and the bound it must keep."""

    label: str
    figure: str  # the results key the value comes from (a run without it has no verdict)
    value: Callable[[Results], float | None]
    bound: float
    at_least: bool  # True: the figure must be ≥ bound; False: ≤ bound
    unit: str = ""
    context: Callable[[Results], str] | None = None  # what the figure was measured against

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.bound if self.at_least else value <= self.bound

    def wanted(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {_number(self.bound)}{self.unit}"


def _get(*path: str) -> Callable[[Results], float | None]:
    def read(results: Results) -> float | None:
        value: Any = results
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value) if isinstance(value, int | float) else None

    return read


def _worst(figure: str, keys: tuple[str, ...]) -> Callable[[Results], float | None]:
    def read(results: Results) -> float | None:
        values = [_get(figure, key)(results) for key in keys]
        present = [v for v in values if v is not None]
        return max(present) if present else None

    return read


def _keys_of(figure: str, prefix: str) -> Callable[[Results], float | None]:
    """The largest of a figure's values whose key starts with ``prefix`` (the stats cases, however many)."""

    def read(results: Results) -> float | None:
        values = [v for k, v in results.get(figure, {}).items() if k.startswith(prefix) and isinstance(v, int | float)]
        return float(max(values)) if values else None

    return read


def _delivery_context(figure: str) -> Callable[[Results], str]:
    def describe(results: Results) -> str:
        ours = results.get(figure, {})
        return (
            f"{_number(ours.get('events_per_second'))} vs ceiling {_number(ours.get('ceiling_events_per_second'))} "
            f"events/s (mean of one before, one after); by CPU {_number(ours.get('cpu_ratio_to_ceiling'))}"
        )

    return describe


def _ingest_context(results: Results) -> str:
    p5 = results.get("P5", {})
    return (
        f"respond-async {_number(p5.get('requests_per_second'))} vs ceiling "
        f"{_number(p5.get('ceiling_requests_per_second'))} req/s; sustained {_number(p5.get('sustained_ratio'))}, "
        f"plain {_number(p5.get('sync_ratio'))}"
    )


LISTS = (
    "events_page_p95_ms",
    "actions_failed_page_p95_ms",
    "events_deep_page_p95_ms",
    "queue_page_p95_ms",
    "incomplete_page_p95_ms",
)

TARGETS: tuple[Target, ...] = (
    Target(
        "P1 webhook, ratio to ceiling", "P1", _get("P1", "ratio_to_ceiling"), 0.8, True, "×", _delivery_context("P1")
    ),
    Target(
        "P2 Klaviyo bulk, ratio to ceiling", "P2", _get("P2", "ratio_to_ceiling"), 5, True, "×", _delivery_context("P2")
    ),
    Target("P3 test event p50", "P3", _get("P3", "p50_ms"), 50, False, " ms"),
    Target("P3 test event p99", "P3", _get("P3", "p99_ms"), 200, False, " ms"),
    Target("P4 list pages p95 (worst)", "P4", _worst("P4", LISTS), 15, False, " ms"),
    Target("P4 stats p95 (worst)", "P4", _keys_of("P4", "stats_"), 25, False, " ms"),
    Target("P5 ingest, ratio to ceiling", "P5", _get("P5", "ratio"), 0.5, True, "×", _ingest_context),
    Target("P5 bulk ingest", "P5", _get("P5", "bulk_triggers_per_second"), 10_000, True, " triggers/s"),
    Target("P6 worker peak RSS", "P6", _get("P6", "worker_peak_rss_mb"), 150, False, " MB"),
)


def _number(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def unjudged(results: Results) -> str | None:
    """Why a run's figures are not judged against the targets, or None: the targets are for the full size and the
    issue's 2 workers."""
    if results.get("size") == "smoke":
        return "— (smoke size)"
    if results.get("workers", 2) != 2:
        return f"— ({results['workers']} worker{'' if results['workers'] == 1 else 's'})"
    return None


def _verdict(met: bool | None, why_not: str | None) -> str:
    if met is None:
        return "not measured"
    if why_not:
        return why_not
    return "yes" if met else "NO"


def verdicts(results: Results) -> str:
    """One run: each target, the figure measured, what it was measured against, and whether it was met. A smoke
    run's figures mean nothing, and the targets are for 2 workers: those runs are not judged."""
    why_not = unjudged(results)
    rows = [["target", "measured", "wanted", "met", "against"]]
    for target in TARGETS:
        if target.figure not in results:
            continue
        value = target.value(results)
        rows.append(
            [
                target.label,
                f"{_number(value)}{target.unit}" if value is not None else "—",
                target.wanted(),
                _verdict(target.met(value), why_not),
                target.context(results) if target.context else "",
            ]
        )
    return _aligned(rows) if len(rows) > 1 else "(no target measured)"


def across(runs: list[Results]) -> str:
    """Several runs: each target's figure in every run, their median, and in how many runs it was met."""
    why_not = next((reason for run in runs if (reason := unjudged(run))), None)
    rows = [["target", *(f"run {i + 1}" for i in range(len(runs))), "median", "wanted", "met"]]
    for target in TARGETS:
        values = [target.value(run) if target.figure in run else None for run in runs]
        present = [v for v in values if v is not None]
        if not present:
            continue
        met = sum(1 for v in present if target.met(v))
        rows.append(
            [
                target.label,
                *(_number(v) if v is not None else "—" for v in values),
                f"{_number(statistics.median(present))}{target.unit}",
                target.wanted(),
                why_not or f"{met} of {len(present)}",
            ]
        )
    return _aligned(rows) if len(rows) > 1 else "(no target measured)"
