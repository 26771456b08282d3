"""benchmarks.ask_profile's summary of py-spy stacks: only samples inside the engine's propose
count, self is the innermost frame, inclusive counts a function once per stack."""

from __future__ import annotations

from benchmarks.ask_profile import summarise

PROPOSE = "propose (service/engine/propose.py:100)"


def test_only_samples_inside_propose_count_and_self_is_the_innermost_frame() -> None:
    stacks = [
        (["<module> (x.py:1)", "history_of (benchmarks/retraining.py:50)"], 40),  # setup
        (["<module> (x.py:1)", PROPOSE, "neighbours (/a/service/engine/encoding.py:267)"], 5),
        (["<module> (x.py:1)", PROPOSE, "rank (/a/service/engine/gp.py:80)",
          "solve (/v/site-packages/numpy/linalg/_linalg.py:362)"], 3),
        (["<module> (x.py:1)", PROPOSE, "f (/a/service/engine/r.py:1)",
          "f (/a/service/engine/r.py:9)"], 2),  # recursion: inclusive counts it once
    ]
    total, own, inclusive = summarise(stacks, top=10)
    assert total == 10
    assert dict(own) == {"neighbours (service/engine/encoding.py)": 5,
                         "solve (numpy/linalg/_linalg.py)": 3, "f (service/engine/r.py)": 2}
    counts = dict(inclusive)
    assert counts["propose (service/engine/propose.py)"] == 10
    assert counts["f (service/engine/r.py)"] == 2
    assert "history_of (benchmarks/retraining.py)" not in counts
