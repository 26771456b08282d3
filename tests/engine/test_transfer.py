"""Transfer in the engine: mapping prior configurations, the prior's opinion, trust and fallback."""

from __future__ import annotations

import numpy as np

from service.engine import transfer
from service.engine.encoding import encoder_for
from service.engine.history import TRANSFER
from service.engine.optimizer import Optimizer
from service.engine.space import SearchSpace

SPACE = SearchSpace.from_dict({"params": [
    {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "y", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "op", "type": "categorical", "choices": ["a", "b", "c"]},
]})


def bowl(p: dict, cx: float = 0.8) -> float:
    return (p["x"] - cx) ** 2 + (p["y"] - cx) ** 2 + (0.0 if p["op"] == "b" else 0.3)


def prior_run(n: int = 40, seed: int = 0, sign: float = 1.0, cx: float = 0.8):
    rng = np.random.default_rng(seed)
    configs = [SPACE.sample(rng) for _ in range(n)]
    return ("p", "minimize", configs, [sign * bowl(c, cx) for c in configs])


def test_configurations_map_by_name_with_clipping_and_explicit_gaps() -> None:
    target = SearchSpace.from_dict({"params": [
        {"name": "x", "type": "float", "low": 0.0, "high": 0.5},
        {"name": "op", "type": "categorical", "choices": ["b", "c"]},
        {"name": "depth", "type": "int", "low": 1, "high": 4},
        {"name": "w", "type": "int", "low": 1, "high": 9,
         "condition": {"parent": "depth", "values": [4]}},
    ]})
    mapped = transfer.map_config(target, {"x": 0.9, "op": "a", "y": 0.3, "w": 5})
    assert mapped == {"x": 0.5}  # clipped; unknown choice and prior-only y dropped; w inactive
    assert transfer.map_config(target, {"x": 0.2, "op": "c", "depth": 4, "w": 7}) == {
        "x": 0.2, "op": "c", "depth": 4, "w": 7}


def test_compatibility_needs_shared_names_of_the_same_type() -> None:
    ints = SearchSpace.from_dict({"params": [{"name": "x", "type": "int", "low": 0, "high": 3}]})
    other = SearchSpace.from_dict({"params": [
        {"name": "z", "type": "float", "low": 0, "high": 1}]})
    assert transfer.mapping_problems(SPACE, SPACE) == []
    assert transfer.mapping_problems(SPACE, ints) == ["x: int in the prior study, float here"]
    assert transfer.mapping_problems(SPACE, other) == ["no parameter name in common"]


def test_ranks_are_within_each_study_and_direction_aware() -> None:
    a = ("a", "minimize", [{"x": 0.1}, {"x": 0.2}], [1.0, 5.0])
    b = ("b", "maximize", [{"x": 0.1}, {"x": 0.2}], [1000.0, 2000.0])  # another scale and sign
    prior = transfer.build_prior(SPACE, [a, b])
    assert prior is not None
    first, second = prior.studies
    assert first.goodness.tolist() == [1.0, 0.0] and second.goodness.tolist() == [0.0, 1.0]
    assert first.scores[0] < first.scores[1] and second.scores[1] < second.scores[0]


def test_the_prior_incumbents_come_first_and_a_related_prior_is_trusted() -> None:
    prior = transfer.build_prior(SPACE, [prior_run(seed=1), prior_run(seed=2)])
    opt = Optimizer(SPACE, seed=0, prior=prior)
    ranked = sorted((c for s in prior.studies for c in s.configs), key=bowl)
    suggestions = [opt.ask() for _ in range(transfer.INCUMBENTS)]
    assert [s.proposal.strategy for s in suggestions] == [TRANSFER] * transfer.INCUMBENTS
    # The consensus of both studies' models: among their best few of 80, not random ones.
    assert all(s.params in ranked[:5] for s in suggestions)
    for s in suggestions:
        opt.tell(s, bowl(s.params, cx=0.75))
    for _ in range(5):
        s = opt.ask()
        opt.tell(s, bowl(s.params, cx=0.75))
    trust = transfer.prior_trust(prior, SPACE, opt.history)
    assert trust is not None and trust > 0.5


def test_a_misleading_prior_is_dropped_once_measured() -> None:
    prior = transfer.build_prior(SPACE, [prior_run(seed=1, sign=-1.0)])  # best there = worst here
    opt = Optimizer(SPACE, seed=0, prior=prior)
    for _ in range(transfer.MIN_RESULTS_FOR_TRUST + 1):
        s = opt.ask()
        opt.tell(s, bowl(s.params))
    trust = transfer.prior_trust(prior, SPACE, opt.history)
    assert trust is not None and trust < transfer.TRUST_MIN
    view = transfer.view(prior, encoder_for(SPACE), opt.history)
    assert view is not None and not view.active and view.weight == 0.0
    later = [opt.ask() for _ in range(3)]
    assert all(s.proposal.strategy != TRANSFER for s in later)


def test_prior_rows_teach_the_pruner_less_as_own_results_arrive() -> None:
    prior = transfer.build_prior(SPACE, [prior_run(n=300, seed=1), prior_run(n=300, seed=2)])
    sizes = [len(transfer.pruner_rows(prior, n)) for n in (0, 50, 99, 100, 500)]
    assert sizes[0] == transfer.PRETRAIN_ROWS and sizes[0] > sizes[1] > sizes[2] > 0
    assert sizes[3:] == [0, 0]
    assert transfer.pruner_rows(None, 0) == []


def test_the_optimizer_pretrains_its_pruner_on_the_prior() -> None:
    calls = []

    def trainer(training_set, previous):  # records what it is given; no torch needed here
        calls.append(training_set.n_trials)
        return previous

    prior = transfer.build_prior(SPACE, [prior_run(n=30, seed=1)])
    opt = Optimizer(SPACE, seed=0, prior=prior, trainer=trainer)
    opt.ask()
    assert calls == [30]


def test_incumbents_are_each_studys_own_best_first() -> None:
    """Round one is every prior study's own best result, before any second-best: a setting one
    study found best is tried even when another study never saw its region."""
    a = ("a", "minimize", [{"x": 0.1, "y": 0.1, "op": "a"}, {"x": 0.9, "y": 0.9, "op": "c"}],
         [0.0, 1.0])
    b = ("b", "minimize", [{"x": 0.5, "y": 0.5, "op": "b"}, {"x": 0.2, "y": 0.8, "op": "a"}],
         [0.0, 1.0])
    prior = transfer.build_prior(SPACE, [a, b])
    first_two = transfer.incumbents(prior, encoder_for(SPACE), set(), 2)
    assert sorted(c["op"] for c in first_two) == ["a", "b"]  # the two studies' winners


def test_a_distrusted_prior_stops_teaching_the_pruner() -> None:
    prior = transfer.build_prior(SPACE, [prior_run(seed=1, sign=-1.0)])
    opt = Optimizer(SPACE, seed=0, prior=prior)
    assert transfer.teaching_prior(prior, SPACE, opt.history) is prior  # unmeasured: it teaches
    for _ in range(transfer.INCUMBENTS + 4):
        s = opt.ask()
        opt.tell(s, bowl(s.params))
    assert transfer.teaching_prior(prior, SPACE, opt.history) is None


def test_a_pruner_that_learnt_a_misleading_prior_has_no_say_until_retrained() -> None:
    """Its predictions would be the prior's wrong ranks: no scorer, so none are recorded (they
    would also hold the pruner's own trust down for many trials)."""
    from service.engine.pruner import PrunerModel, make_training_set
    from service.training import train_pruner

    prior = transfer.build_prior(SPACE, [prior_run(n=60, seed=1, sign=-1.0)])
    encoder = encoder_for(SPACE)
    model = train_pruner(make_training_set(encoder, Optimizer(SPACE).history, (), prior),
                         device="cpu")
    assert model.n_prior == 60 and PrunerModel.from_bytes(model.to_bytes()).n_prior == 60
    opt = Optimizer(SPACE, seed=0, prior=prior)
    opt.model = model
    first = opt.ask()  # unmeasured prior: the pretrained pruner forecasts
    assert first.proposal.predicted is not None
    opt.tell(first, bowl(first.params))
    for _ in range(transfer.INCUMBENTS + 4):
        s = opt.ask()
        opt.tell(s, bowl(s.params))
    assert transfer.prior_trust(prior, SPACE, opt.history) < transfer.TRUST_MIN
    assert opt.ask().proposal.predicted is None


def test_pruner_trust_skips_forecasts_made_before_the_prior_was_judged() -> None:
    from service.engine.history import History, Observation, ProposalInfo, TrialState
    from service.engine.trust import measure_trust

    def trial(i: int, strategy: str, predicted: float, value: float) -> Observation:
        return Observation(i, {"x": i / 20}, TrialState.COMPLETE, value,
                           proposal=ProposalInfo(strategy, 0.5, predicted))

    early = [trial(i, "initial", float(i), float(i)) for i in range(6)]  # perfectly wrong
    later = [trial(6 + i, "surrogate", float(i), float(-i)) for i in range(6)]  # perfectly right
    history = History("minimize", tuple(early + later))
    assert measure_trust(history) < 0.5
    assert measure_trust(history, skip=transfer.PRETRAINED_FORECASTS) == 1.0


# --- trust weighted toward the top -------------------------------------------------------------

LINE = SearchSpace.from_dict({"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]})


def knows_only_the_bad_half(x: float) -> float:
    """A sibling whose worse half (x >= 0.5) is ordered as in ``x`` below, but whose better half is
    ordered backwards: it tells bad regions from good ones and has the optimum at the wrong end."""
    return 1.0 + x if x >= 0.5 else 0.5 - x


def line_trust(prior_loss, n_results: int = 12) -> float | None:
    """The trust in a prior run of ``prior_loss`` after ``n_results`` spread results of the study,
    whose loss is ``x`` (best at 0)."""
    configs = [{"x": float(x)} for x in np.linspace(0.0, 1.0, 41)]
    prior = transfer.build_prior(LINE, [("p", "minimize", configs,
                                         [prior_loss(c["x"]) for c in configs])])
    from service.engine.history import History, Observation, TrialState

    xs = (np.arange(n_results) + 0.5) / n_results
    history = History("minimize", tuple(Observation(i, {"x": float(x)}, TrialState.COMPLETE,
                                                    float(x)) for i, x in enumerate(xs)))
    return transfer.prior_trust(prior, LINE, history)


def test_a_prior_that_knows_only_the_bad_half_is_not_trusted_to_exploit() -> None:
    from service.engine.stats import spearman

    trust = line_trust(knows_only_the_bad_half)
    assert trust is not None and trust < transfer.TRUST_MIN
    # The plain Spearman correlation over all results would have trusted it.
    xs = (np.arange(12) + 0.5) / 12
    assert spearman([-knows_only_the_bad_half(x) for x in xs], -xs) > 0.5


def test_a_prior_that_ranks_the_top_right_is_trusted() -> None:
    trust = line_trust(lambda x: x)
    assert trust is not None and trust > 0.9
    # Ordering the worse half backwards costs it the overall correlation, not its trust.
    trust = line_trust(lambda x: x if x < 0.5 else 2.5 - x)
    assert trust is not None and trust >= transfer.TRUST_MIN


def test_the_better_half_counts_only_once_it_has_enough_results() -> None:
    few = 2 * transfer.MIN_RESULTS_FOR_TRUST - 1  # its better half would hold too few for Spearman
    good = np.arange(float(few))
    upside_down_top = np.concatenate([good[:few // 2 + 1], good[few // 2 + 1:][::-1]])
    assert transfer.top_weighted_trust(upside_down_top, good) > transfer.TRUST_MIN
    good = np.arange(float(few + 1))
    upside_down_top = np.concatenate([good[:(few + 1) // 2], good[(few + 1) // 2:][::-1]])
    assert transfer.top_weighted_trust(upside_down_top, good) < 0


def test_the_priors_own_incumbents_do_not_judge_its_top() -> None:
    """The prior's incumbents are tried because it rates them highest: good results that are not
    the study's very best would otherwise make a prior that orders the rest of the top right read
    as inverted there."""
    good = np.arange(12.0)  # best last
    predicted = good.copy()
    predicted[[6, 7]] = [20.0, 21.0]  # its two favourites: in the better half, not the best
    picks = np.zeros(12, dtype=bool)
    picks[[6, 7]] = True
    assert transfer.top_weighted_trust(predicted, good) < transfer.TRUST_MIN
    assert transfer.top_weighted_trust(predicted, good, picks) > 0.8
