"""The coalescing benchmark's simulation (benchmarks/coalescing.py), on a tiny synthetic task.

With an engine that takes no time both modes must be the parallel benchmark's simulation, told
value for told value. With an engine that takes time, serial asks are answered one per engine
call while coalesced ones come in batches of the workers waiting (at most MAX_BATCH), every
answer waits for its call to end, and no configuration is handed out twice.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import coalescing as co
from benchmarks import parallel as par
from benchmarks.optimizers.dyesp import DyESP
from benchmarks.tasks import registry
from tests.bench.test_parallel import NAME, TASK


@pytest.fixture(autouse=True)
def no_trainer(monkeypatch):
    monkeypatch.setattr(DyESP, "use_trainer", False)
    monkeypatch.setitem(registry.FACTORIES, NAME, lambda: TASK)


@pytest.mark.parametrize("coalesce", [False, True])
def test_an_engine_that_takes_no_time_is_the_parallel_simulation(coalesce):
    expected = par.simulate(DyESP(TASK, 4), TASK, 40, 8, par.durations(4), stop_at_target=False)
    trace = co.simulate(DyESP(TASK, 4), TASK, 40, 8, par.durations(4), 0.0, coalesce,
                        stop_at_target=False)
    assert [v for _, _, _, v in trace["told"]] == [v for _, _, _, v in expected["told"]]
    assert [f for _, _, f, _ in trace["told"]] == [f for _, _, f, _ in expected["told"]]


def test_serial_asks_queue_and_coalesced_ones_share_engine_calls():
    serial = co.simulate(DyESP(TASK, 6), TASK, 40, 8, par.durations(6), 0.2, False,
                         stop_at_target=False)
    optimizer = DyESP(TASK, 6)
    coalesced = co.simulate(optimizer, TASK, 40, 8, par.durations(6), 0.2, True,
                            stop_at_target=False)
    assert serial["batches"] == [1] * 40
    assert coalesced["batches"][0] == 8  # every worker waits at the start
    assert sum(coalesced["batches"]) == 40 and max(coalesced["batches"]) <= co.MAX_BATCH
    assert len(coalesced["batches"]) < 40  # some later calls answered several workers
    # The first trials start when their engine call ends: 0.2 x 1, 2, ... 8 one by one, and
    # 0.2 x (1 + 7 x BATCH_EXTRA) for all eight at once.
    serial_starts = sorted(s for _, s, _, _ in serial["told"])[:8]
    assert serial_starts == pytest.approx([0.2 * k for k in range(1, 9)])
    batch_end = 0.2 * (1 + 7 * co.BATCH_EXTRA)
    assert sorted(s for _, s, _, _ in coalesced["told"])[:8] == pytest.approx([batch_end] * 8)
    keys = [json.dumps(t.params, sort_keys=True) for t in optimizer.opt.history.trials]
    assert len(set(keys)) == len(keys)  # a batch's picks are pending for one another


def test_the_report_pairs_the_modes_from_the_cache(tmp_path):
    root = co.cache_root(tmp_path, 8, 0.5)
    for mode in co.MODES:
        for seed in (100, 101):
            co.run_and_store(str(root), NAME, mode, seed, 60, 0.1, 8, 0.5)
    md = co.build_report(tmp_path, [NAME], range(100, 102), 60, [0.1], 8, 0.5, "test")
    report = json.loads((tmp_path / "coalescing.json").read_text())["ask_times"]["0.1"]
    assert report["pairs"] == 2 and set(report["tasks"][NAME]) >= {"serial", "coalesced"}
    assert report["tasks"][NAME]["coalesced"]["mean_batch"] > 1
    pooled = report["pooled"]
    assert pooled["trials_low"] <= pooled["trials"] <= pooled["trials_high"]
    assert "## Engine time 0.1" in md and f"| {NAME} |" in md
