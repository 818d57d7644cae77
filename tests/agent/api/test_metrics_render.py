"""Prometheus exposition of metrics several components report: one HELP/TYPE block per family."""

from __future__ import annotations

import pytest

from agent.api.metrics import Metric, render, stage_metrics


def test_a_family_reported_by_several_components_is_declared_once_with_all_samples() -> None:
    text = render([*stage_metrics("detect", 1.5, 3), *stage_metrics("embed", 0.25, 2)])
    assert text.count("# TYPE watchword_stage_seconds_total counter") == 1
    assert text.count("# TYPE watchword_stage_calls_total counter") == 1
    assert 'watchword_stage_seconds_total{stage="detect"} 1.5' in text
    assert 'watchword_stage_seconds_total{stage="embed"} 0.25' in text
    assert 'watchword_stage_calls_total{stage="embed"} 2' in text
    # the samples follow their family's header, not another family's
    lines = text.splitlines()
    calls = lines.index("# TYPE watchword_stage_calls_total counter")
    assert all(line.startswith("watchword_stage_seconds_total") for line in lines[2 : calls - 1])


def test_one_name_declared_two_ways_is_refused() -> None:
    with pytest.raises(ValueError, match="watchword_x"):
        render([Metric("watchword_x", "counter", "a"), Metric("watchword_x", "gauge", "a")])
