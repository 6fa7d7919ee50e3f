"""The bench's verdicts (bench/report.py): each target read from a run's results and judged against its bound."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parent.parent


def a_run(**overrides: Any) -> dict[str, Any]:
    results: dict[str, Any] = {
        "size": "full",
        "ceiling": {"events_per_second": 1500.0},
        "P1": {
            "events_per_second": 1350.0,
            "ceiling_events_per_second": 1500.0,
            "ratio_to_ceiling": 0.9,
            "cpu_ratio_to_ceiling": 0.92,
        },
        "P2": {
            "events_per_second": 9000.0,
            "ceiling_events_per_second": 1500.0,
            "ratio_to_ceiling": 6.0,
            "cpu_ratio_to_ceiling": 6.1,
        },
        "P3": {"p50_ms": 12.0, "p99_ms": 20.0},
        "P4": {
            "events_page_p95_ms": 7.0,
            "actions_failed_page_p95_ms": 8.0,
            "events_deep_page_p95_ms": 7.5,
            "stats_30_days_p95_ms": 9.0,
            "stats_window_off_the_hour_p95_ms": 18.0,
            "floor_integrations_p95_ms": 5.0,
        },
        "P5": {
            "ratio": 0.55,
            "requests_per_second": 500.0,
            "ceiling_requests_per_second": 900.0,
            "bulk_triggers_per_second": 12000.0,
        },
        "P6": {"worker_peak_rss_mb": 83.0},
    }
    for figure, values in overrides.items():
        results[figure] = {**results[figure], **values}
    return results


def row(table: str, label: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(label))


def met(table: str, label: str) -> str:
    """The "met" cell of a one-run table's row (cells are separated by two spaces or more)."""
    return re.split(r"\s{2,}", row(table, label))[3]


def test_a_run_that_meets_every_target_is_judged_yes_on_every_row() -> None:
    table = report.verdicts(a_run())
    for target in report.TARGETS:
        assert met(table, target.label) == "yes"
    assert "NO" not in table


def test_a_figure_past_its_bound_is_judged_no_whichever_way_the_bound_points() -> None:
    table = report.verdicts(a_run(P2={"ratio_to_ceiling": 4.7}, P4={"actions_failed_page_p95_ms": 15.5}))
    assert met(table, "P2 Klaviyo bulk") == "NO"
    assert met(table, "P4 list pages") == "NO"  # the worst of the three list pages counts
    assert met(table, "P4 stats") == "yes"
    assert "15.5 ms" in row(table, "P4 list pages")


def test_a_bound_itself_meets_the_target() -> None:
    table = report.verdicts(a_run(P1={"ratio_to_ceiling": 0.8}, P6={"worker_peak_rss_mb": 150}))
    assert met(table, "P1 webhook") == "yes"
    assert met(table, "P6 worker") == "yes"


def test_the_stats_target_takes_the_worst_stats_case_and_not_the_floor_call() -> None:
    table = report.verdicts(a_run(P4={"stats_window_off_the_hour_p95_ms": 26.0, "floor_integrations_p95_ms": 99.0}))
    assert "26 ms" in row(table, "P4 stats")
    assert met(table, "P4 stats") == "NO"
    assert met(table, "P4 list pages") == "yes"


def test_a_smoke_run_is_not_judged() -> None:
    table = report.verdicts({**a_run(), "size": "smoke"})
    assert "yes" not in table and "NO" not in table
    assert "— (smoke size)" in row(table, "P2 Klaviyo bulk")


def test_a_run_of_some_figures_has_verdicts_only_for_those() -> None:
    results = {key: value for key, value in a_run().items() if key in {"size", "ceiling", "P2"}}
    table = report.verdicts(results)
    assert "P2 Klaviyo bulk" in table
    assert "P1 webhook" not in table and "P5" not in table


def test_the_ratios_show_what_they_were_measured_against() -> None:
    table = report.verdicts(a_run())
    assert "9,000 vs ceiling 1,500 events/s (mean of one before, one after); by CPU 6.1" in row(
        table, "P2 Klaviyo bulk"
    )
    assert "500 vs ceiling 900 req/s" in row(table, "P5 ingest")


def test_across_runs_counts_the_runs_that_met_each_target_and_gives_the_median() -> None:
    runs = [a_run(P2={"ratio_to_ceiling": r}) for r in (4.7, 5.2, 6.0)]
    table = report.across(runs)
    line = row(table, "P2 Klaviyo bulk")
    assert "4.7" in line and "5.2" in line and "6" in line
    assert "5.2×" in line  # the median
    assert line.rstrip().endswith("2 of 3")
    assert row(table, "P1 webhook").rstrip().endswith("3 of 3")


def test_the_bench_refuses_an_unknown_figure_with_a_message_and_a_non_zero_exit() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "P2,P9"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "unknown figure(s) P9" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_run_with_other_than_two_workers_is_shown_but_not_judged() -> None:
    table = report.verdicts({**a_run(), "workers": 1})
    assert met(table, "P1 webhook") == "— (1 worker)"
    assert "yes" not in table and "NO" not in table
    assert report.across([a_run(), {**a_run(), "workers": 4}]).count("— (4 workers)") == len(report.TARGETS)
