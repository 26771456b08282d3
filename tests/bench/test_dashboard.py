"""The dashboard benchmark's harness, end to end on a tiny study (structure, never timings).

300 trials seeded in bulk against a real server on PostgreSQL: every page's shell and every API
request its script makes answer 200, each response's points stay within the limits the script
asks for, the seeded rows are what the pages count, and the report files are written.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import dashboard
from tests.conftest import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.slow


def test_tiny_study_end_to_end(tmp_path, postgres_url: str) -> None:
    # postgres_url: skips (or fails in CI) when PostgreSQL is unreachable; the benchmark makes
    # its own databases through the admin URL.
    report = dashboard.main(["--trials", "300", "--small", "0", "--reported", "40",
                             "--pruned", "30", "--versions", "2", "--repeats", "1",
                             "--soak", "1", "--no-browser", "--admin-url", POSTGRES_ADMIN_URL,
                             "--out", str(tmp_path)])
    (size,) = report["sizes"]
    assert size["trials"] == 300
    assert size["seeded"]["reports"] > 0 and size["seeded"]["pruned"] == 30
    assert set(size["pages"]) == {"studies", "study", "engine", "map", "trial"}
    for name, page in size["pages"].items():
        assert page["all_200"], (name, [(r["path"], r["status"]) for r in page["requests"]])
    requests = {r["path"].split("/insights/")[-1].split("?")[0]: r
                for p in size["pages"].values() for r in p["requests"]}
    assert requests["history"]["points"] <= 2000 + 2000 + 60  # sample, best line, bins
    assert requests["params"]["points"] <= 1000 + dashboard_best()
    assert requests["map"]["points"] <= 1500 + dashboard_best() + 500
    assert requests["trials"]["points"] == 20
    for key in ("before", "after_first_round", "after_soak", "peak"):
        assert size["rss_mib"][key] > 0
    written = json.loads((tmp_path / "dashboard.json").read_text())
    assert written["sizes"][0]["trials"] == 300
    assert "| 300 | study |" in (tmp_path / "dashboard.md").read_text()


def test_tiny_study_is_sampled_past_max_points(tmp_path, postgres_url: str) -> None:
    """Past ``max_points`` complete trials the history and parameters are sampled, not sent
    whole: the point the benchmark makes at 100,000 trials, shown here at a few thousand."""
    report = dashboard.main(["--trials", "2500", "--small", "0", "--reported", "20",
                             "--pruned", "0", "--versions", "0", "--repeats", "1",
                             "--soak", "0", "--no-browser", "--admin-url", POSTGRES_ADMIN_URL,
                             "--out", str(tmp_path)])
    study = report["sizes"][0]["pages"]["study"]
    by_kind = {r["path"].split("/insights/")[-1].split("?")[0]: r for r in study["requests"]}
    assert by_kind["params"]["points"] <= 1000 + dashboard_best()
    history_points = by_kind["history"]["points"]
    assert history_points < 2500  # a stride sample, the best line and the bins


def dashboard_best() -> int:
    from service.usecases.insights import BEST_IN_SAMPLE

    return BEST_IN_SAMPLE
