"""Choose which client-evaluated candidates to train: the second step of a static-metrics ask.

When a study declares static metrics, only the client can compute them (it builds the model), so
ask becomes two steps: the engine proposes a pool, the client returns metrics for (some of) it, and
this module lets the pruner pick. While the pruner has not earned trust the engine's own order is
kept, so the engine is never worse than its strategies alone; predictions are recorded either way
so trust can be measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.engine.decision import Decision, Proposal
from service.engine.encoding import encoder_for
from service.engine.history import History, ProposalInfo, PrunedCandidate, seen_keys
from service.engine.options import EngineOptions
from service.engine.pruner import PrunerModel, feature_fingerprint, featurize
from service.engine.space import SearchSpace, config_key
from service.engine.trust import measure_trust, trust_strength


def select(space: SearchSpace, history: History, configs: Sequence[Mapping[str, Any]],
           metrics: Sequence[Mapping[str, float]], infos: Sequence[ProposalInfo], k: int, *,
           pruner: PrunerModel | None, options: EngineOptions | None = None) -> Decision:
    """The ``k`` candidates to train (in the engine's order unless the pruner is trusted) and,
    when the pruner had a say, the others as pruned with their predictions.

    Candidates already tried or running are passed over while fresh ones remain (two clients may
    have been shown overlapping pools).
    """
    options = EngineOptions.coerce(options)
    seen = seen_keys(history)
    fresh = [i for i, c in enumerate(configs) if config_key(c) not in seen]
    order = fresh or list(range(len(configs)))
    predicted: np.ndarray | None = None
    strength = 0.0
    encoder = encoder_for(space)
    if (pruner is not None and options.pruner
            and pruner.fingerprint == feature_fingerprint(encoder, pruner.metric_names)):
        features = featurize(encoder, list(configs), list(metrics), pruner.metric_names)
        mean, std = pruner.predict(features)
        predicted = np.asarray(mean, dtype=float)
        strength = trust_strength(measure_trust(history))
        if strength > 0:
            # Optimism shrinks as trust grows: an untested pruner's doubt still gets explored.
            score = predicted + (1.0 - strength) * np.asarray(std, dtype=float)
            order = sorted(order, key=lambda i: -score[i])
    chosen = order[:k]
    proposals = tuple(
        Proposal(dict(configs[i]), ProposalInfo(
            infos[i].strategy, infos[i].exploration,
            None if predicted is None else float(predicted[i])))
        for i in chosen
    )
    pruned: tuple[PrunedCandidate, ...] = ()
    if predicted is not None and strength > 0:
        pruned = tuple(PrunedCandidate(dict(configs[i]), float(predicted[i]), dict(metrics[i]))
                       for i in order[k:])
    return Decision(proposals, pruned)
