"""The second step of a static-metrics ask: the pruner has its say only once it has earned trust,
and then by the same rule as in ``propose`` (``pruning``): it discards candidates predicted below a
trust-scaled quantile of the results, and the engine's order decides among the survivors."""

from __future__ import annotations

import numpy as np

from service.engine.encoding import Encoder
from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.pruner import PrunerModel, feature_fingerprint
from service.engine.selection import select
from service.engine.space import SearchSpace

SPACE = SearchSpace.from_dict({"params": [{"name": "x", "type": "float", "low": 0, "high": 1}]})
NAMES = ("score",)


def model_reading_the_metric() -> PrunerModel:
    """A one-layer 'MLP' whose prediction is sigmoid(metric feature): the metric is the truth."""
    encoder = Encoder(SPACE)
    n_features = encoder.dim + 2 * len(NAMES)
    W = np.zeros((n_features, 1))
    W[encoder.dim, 0] = 5.0  # the signed-log1p metric column
    return PrunerModel(members=(((W, np.zeros(1)),),), x_mean=np.zeros(n_features),
                       x_std=np.ones(n_features),
                       fingerprint=feature_fingerprint(encoder, NAMES), metric_names=NAMES,
                       n_train=50)


def history(predictions_agree: bool) -> History:
    trials = []
    for i in range(20):
        value = float(i)  # minimize: lower is better, so goodness falls with i
        predicted = 1.0 - i / 20 if predictions_agree else i / 20
        trials.append(Observation(i, {"x": i / 20}, TrialState.COMPLETE, value,
                                  proposal=ProposalInfo("parzen", 0.3, predicted)))
    return History("minimize", tuple(trials))


CONFIGS = [{"x": 0.111}, {"x": 0.222}, {"x": 0.333}, {"x": 0.444}]
# Predicted goodness sigmoid(5 x signed_log1p(score)): 0.03, 0.12, 1.0, 0.97 for the first four.
METRICS = [{"score": -1.0}, {"score": -0.5}, {"score": 3.0}, {"score": 1.0}]
INFOS = [ProposalInfo("local", 0.2)] * 4


def test_trusted_pruner_discards_the_poorly_predicted_and_the_engine_order_picks() -> None:
    decision = select(SPACE, history(True), CONFIGS, METRICS, INFOS, 1,
                      pruner=model_reading_the_metric())
    (chosen,) = decision.proposals
    # Below the median of the results (trust 1: the full quantile 0.5) the first two go; of the
    # survivors the engine's first is taken, the other survivor is neither taken nor pruned.
    assert chosen.params == {"x": 0.333}
    assert chosen.info.strategy == "local" and chosen.info.predicted > 0.9
    assert [p.params for p in decision.pruned] == [{"x": 0.111}, {"x": 0.222}]
    assert all(p.predicted < 0.5 and p.metrics for p in decision.pruned)


def test_selection_and_propose_share_one_prune_decision() -> None:
    """What ``select`` discards is exactly what the pruning policy's mask discards."""
    from service.engine import pruning
    from service.engine.encoding import encoder_for
    from service.engine.options import EngineOptions

    hist = history(True)
    scorer, trust = pruning.consult(model_reading_the_metric(), encoder_for(SPACE), hist, None,
                                    EngineOptions(), lambda configs: METRICS)
    mean, _ = scorer(CONFIGS)
    keep = pruning.prune_mask(mean, hist, trust, pruning.prune_quantile(trust, 0.0,
                                                                         EngineOptions()))
    decision = select(SPACE, hist, CONFIGS, METRICS, INFOS, 2, pruner=model_reading_the_metric())
    kept = [c for c, k in zip(CONFIGS, keep, strict=True) if k]
    assert [p.params for p in decision.proposals] == kept
    assert [p.params for p in decision.pruned] == [c for c in CONFIGS if c not in kept]


def test_too_few_survivors_are_made_up_by_the_best_predicted_of_the_discarded() -> None:
    decision = select(SPACE, history(True), CONFIGS, METRICS, INFOS, 3,
                      pruner=model_reading_the_metric())
    assert [p.params for p in decision.proposals] == [CONFIGS[2], CONFIGS[3], CONFIGS[1]]
    assert [p.params for p in decision.pruned] == [CONFIGS[0]]


def test_untrusted_pruner_keeps_the_engine_order_but_records_predictions() -> None:
    decision = select(SPACE, history(False), CONFIGS, METRICS, INFOS, 2,
                      pruner=model_reading_the_metric())
    assert [p.params for p in decision.proposals] == CONFIGS[:2]
    assert all(p.info.predicted is not None for p in decision.proposals)
    assert decision.pruned == ()


def test_without_a_pruner_the_first_untried_candidates_are_taken() -> None:
    tried = History("minimize", (Observation(0, {"x": 0.111}, TrialState.RUNNING),))
    decision = select(SPACE, tried, CONFIGS, METRICS, INFOS, 2, pruner=None)
    assert [p.params for p in decision.proposals] == CONFIGS[1:3]
