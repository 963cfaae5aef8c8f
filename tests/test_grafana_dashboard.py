"""cluster/grafana/raybench_grafana_dashboard.json: the run's Grafana dashboard (images/s per
model, cells done and failed, ETA) queries only metrics a run exports, with the tags they carry,
and every one of them; the names come from raybench.pipeline.progress (its METRICS), not a copy.
That they reach a Prometheus endpoint: tests/test_submit.py (a real head)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raybench.pipeline.progress import exported_names

DASHBOARD = Path(__file__).resolve().parent.parent / "cluster" / "grafana" / "raybench_grafana_dashboard.json"
METRIC = re.compile(r"\b(ray_\w+)\s*(?:\{([^}]*)\})?")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target and every templating query."""
    found = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found.append((f"variable {var['name']}", query))
    return found


def test_the_dashboard_is_one_grafana_dashboard_in_rays_own_form():
    dashboard = _dashboard()
    assert dashboard["uid"] == "raybench" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)) and len({p["id"] for p in dashboard["panels"]}) == len(titles)
    for panel in dashboard["panels"]:
        assert panel["datasource"] == "${datasource}" and panel["targets"], panel["title"]
    assert {"Images per second, per model", "Cells done, failed and remaining", "ETA"} <= set(titles)


@pytest.mark.parametrize("title, expr", _exprs(json.loads(DASHBOARD.read_text())) if DASHBOARD.is_file() else [])
def test_every_query_reads_metrics_a_run_exports_with_their_tags(title, expr):
    exported = exported_names()
    used = METRIC.findall(expr)
    assert used, f"{title}: {expr} reads no raybench metric"
    for name, selector in used:
        assert name in exported, f"{title}: {name} is not exported (exported: {sorted(exported)})"
        labels = {part.split("=")[0].strip().rstrip("!~") for part in selector.split(",") if part.strip()}
        assert labels <= set(exported[name]), f"{title}: {name} has no tag {sorted(labels - set(exported[name]))}"
    common = set.intersection(*(set(exported[name]) for name, _ in used))
    for group in BY.findall(expr):
        assert {g.strip() for g in group.split(",") if g.strip()} <= common, f"{title}: by ({group})"
    for match in re.finditer(r"label_values\((ray_\w+)[^,]*,\s*(\w+)\)", expr):
        assert match.group(2) in exported[match.group(1)], f"{title}: {match.group(0)}"


def test_every_exported_metric_is_drawn():
    drawn = {name for _, expr in _exprs(_dashboard()) for name, _ in METRIC.findall(expr)}
    assert set(exported_names()) <= drawn, sorted(set(exported_names()) - drawn)
