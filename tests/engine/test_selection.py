"""The second step of a static-metrics ask: the pruner picks only once it has earned trust."""

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
METRICS = [{"score": 0.1}, {"score": 0.2}, {"score": 3.0}, {}]
INFOS = [ProposalInfo("local", 0.2)] * 4


def test_trusted_pruner_picks_the_best_predicted_and_records_the_rest_as_pruned() -> None:
    decision = select(SPACE, history(True), CONFIGS, METRICS, INFOS, 1,
                      pruner=model_reading_the_metric())
    (chosen,) = decision.proposals
    assert chosen.params == {"x": 0.333}
    assert chosen.info.strategy == "local" and chosen.info.predicted > 0.9
    assert {tuple(p.params.items()) for p in decision.pruned} == {
        (("x", 0.111),), (("x", 0.222),), (("x", 0.444),)}


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
