"""Choose which client-evaluated candidates to train: the second step of a static-metrics ask.

When a study declares static metrics, only the client can compute them (it builds the model), so
ask becomes two steps: the engine proposes a pool, the client returns metrics for (some of) it, and
the pruner has its say on the pool by the same policy as in ``propose`` (``pruning``): once trusted
it discards candidates predicted poor, and the engine's order decides among the rest. Predictions
are recorded either way, so trust can be measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from service.engine import pruning, transfer
from service.engine.decision import Decision, Proposal
from service.engine.encoding import encoder_for
from service.engine.history import History, ProposalInfo, PrunedCandidate, seen_keys
from service.engine.options import EngineOptions
from service.engine.partial_results import with_partial_results
from service.engine.space import SearchSpace, config_key

if TYPE_CHECKING:
    from service.engine.pruner import PrunerModel
    from service.engine.transfer import Prior


def select(space: SearchSpace, history: History, configs: Sequence[Mapping[str, Any]],
           metrics: Sequence[Mapping[str, float]], infos: Sequence[ProposalInfo], k: int, *,
           pruner: PrunerModel | None, options: EngineOptions | None = None,
           prior: Prior | None = None) -> Decision:
    """The ``k`` candidates to train, in the engine's order among those the pruner keeps, and the
    ones it discarded, with their predictions. ``prior``: the study's prior studies, if any, so the
    pruner is judged as ``propose`` judges it.

    Candidates already tried or running are passed over while fresh ones remain (two clients may
    have been shown overlapping pools).
    """
    options = EngineOptions.coerce(options)
    history = with_partial_results(history)  # as ``propose``: stopped trials are evidence
    seen = seen_keys(history)
    fresh = [i for i, c in enumerate(configs) if config_key(c) not in seen]
    order = fresh or list(range(len(configs)))
    pool = [configs[i] for i in order]
    pool_metrics = [metrics[i] for i in order]
    encoder = encoder_for(space)
    by_key = {config_key(c): dict(m) for c, m in zip(pool, pool_metrics, strict=True)}
    scorer, trust = pruning.consult(
        pruner, encoder, history, transfer.view(prior, encoder, history), options,
        lambda asked: [by_key[config_key(c)] for c in asked])
    chosen = list(range(min(k, len(pool))))
    pruned: list[PrunedCandidate] = []
    predicted = None
    if scorer is not None and pool:
        predicted, _ = scorer(pool)
        quantile = pruning.prune_quantile(trust, pruning.prune_ratio(history), options)
        keep = pruning.prune_mask(predicted, history, trust, quantile)
        chosen = pruning.pick(predicted, keep, min(k, len(pool)))
        pruned = pruning.discarded(pool, predicted, pool_metrics, keep, chosen,
                                   pruning.MAX_PRUNED_PER_ASK)
    proposals = tuple(
        Proposal(dict(pool[i]), ProposalInfo(
            infos[order[i]].strategy, infos[order[i]].exploration,
            None if predicted is None else float(predicted[i])))
        for i in chosen
    )
    return Decision(proposals, tuple(pruned))
