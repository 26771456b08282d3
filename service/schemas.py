"""The API contract: request and response models, separate from the tables (DESIGN rule 6)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

ChoiceValue = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat
ParamValue = StrictBool | StrictInt | StrictFloat | StrictStr


def reject_unstorable(value: Any) -> Any:
    """No NUL and no lone surrogate in any string of a request, dict keys included: PostgreSQL text
    cannot hold a NUL and UTF-8 cannot encode a surrogate (JSON can spell both, ``"\\u0000"``,
    ``"\\ud800"``), so such a name is a 422 on every backend rather than a 500 on one."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL (U+0000) characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must not contain lone surrogates (U+D800 to U+DFFF)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_unstorable(key)
            reject_unstorable(item)
    elif isinstance(value, list):
        for item in value:
            reject_unstorable(item)
    return value


class Strict(BaseModel):
    """Base of every request body: unknown fields are 422s, and so are strings no backend can
    store. Numbers and booleans are declared Strict*: ``"5"`` or ``true`` for a count is a 422."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return reject_unstorable(value)


class ConditionSpec(Strict):
    parent: str = Field(min_length=1, max_length=128)
    values: list[ChoiceValue] = Field(min_length=1, max_length=1024)


class CellSpec(Strict):
    """A categorical that is the operation on an edge of a DAG cell (``service.engine.cells``):
    ``edge`` is ``[from, to]`` with from < to; ``zero`` the choice meaning "no connection"."""

    name: str = Field(min_length=1, max_length=128)
    edge: list[StrictInt] = Field(min_length=2, max_length=2)
    zero: ChoiceValue | None = None


class ParamSpec(Strict):
    """One parameter. Semantic rules (ranges, steps, conditions) are checked by the engine's
    space parser, whose errors name the field the same way."""

    name: str = Field(min_length=1, max_length=128)
    type: Literal["float", "int", "categorical"]
    low: Number | None = None
    high: Number | None = None
    log: StrictBool = False
    step: Number | None = None
    choices: list[ChoiceValue] | None = Field(default=None, min_length=1, max_length=1024)
    condition: ConditionSpec | None = None
    cell: CellSpec | None = None


class SpaceSpec(Strict):
    params: list[ParamSpec] = Field(min_length=1, max_length=256)


MAX_STEP = 10**6  # the largest step a report or a fidelity may name (early_stopping.MAX_FIDELITY)


def finite_number(value: float | None) -> float | None:
    """A validator body: None passes, a NaN or an infinity is refused (JSON has neither, and a
    non-finite value would poison every ranking it enters)."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


def finite_metrics(metrics: dict[str, float] | None) -> dict[str, float] | None:
    """A validator body: every static metric finite, named in the error."""
    for name, value in (metrics or {}).items():
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r} must be a finite number, got {value}")
    return metrics


class FidelitySpec(Strict):
    """The integer steps trials report at (epochs, say): the rungs of early stopping sit on them.
    ``min < max`` is checked by the use case, naming ``fidelity.max``."""

    name: str = Field(min_length=1, max_length=64)
    min: StrictInt = Field(ge=0, le=MAX_STEP)
    max: StrictInt = Field(ge=1, le=MAX_STEP)


class StudyCreate(Strict):
    name: str = Field(min_length=1, max_length=256)
    direction: Literal["minimize", "maximize"] = "minimize"
    space: SpaceSpec
    seed: StrictInt | None = Field(default=None, ge=0, le=2**63 - 1)
    heartbeat_timeout_s: StrictFloat | None = Field(default=None, gt=0, le=7 * 24 * 3600,
                                                    allow_inf_nan=False)
    static_metrics: list[str] = Field(default_factory=list, max_length=64)
    # Prior studies to learn from: ids of the owner's studies, or "auto" for every compatible
    # study of the owner with enough results (see docs/api-contract.md, "Transfer").
    transfer_from: list[StrictStr] = Field(default_factory=list, max_length=32)
    transfer: Literal["off", "auto"] = "off"
    fidelity: FidelitySpec | None = None
    # Asks reproducible from the seed alone; null: true when a seed is given, else false.
    deterministic: StrictBool | None = None


class UserAttrsPatch(Strict):
    """``PATCH`` of a study or a trial: ``user_attrs`` merged into the stored ones; a null value
    deletes its key (limits: ``service.usecases.user_attrs``)."""

    user_attrs: dict[str, Any]


class TransferOut(BaseModel):
    """Which studies a study learns from, and how far the transfer is trusted now."""

    sources: list[str]
    prior_trials: int | None = Field(default=None, description=(
        "complete trials of the sources the prior learned from (null in study lists)"))
    trust: float | None = Field(default=None, description=(
        "Spearman correlation of the prior's predictions with this study's results so far; null "
        "until 4 results, and in study lists"))
    active: bool | None = Field(default=None, description=(
        "whether the prior still steers proposals (trust unmeasured or >= 0.1; null in lists)"))


class ProposalOut(BaseModel):
    strategy: str
    exploration: float
    predicted: float | None = None


TrialStateName = Literal["waiting", "running", "complete", "failed", "infeasible", "stopped"]
CURVE_IN_TRIAL = 100  # points of a trial's curve shown in a trial object (the last ones)


class TrialOut(BaseModel):
    id: int
    number: int
    study_id: str
    state: TrialStateName
    params: dict[str, Any]
    value: float | None
    reason: str | None
    static_metrics: dict[str, float]
    proposal: ProposalOut | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    completed_at: datetime | None
    last_step: int | None = Field(default=None, description="the largest step reported")
    intermediate: list[tuple[int, float]] = Field(default_factory=list, description=(
        f"the last {CURVE_IN_TRIAL} reported [step, value] points in step order; the whole "
        "curve pages at .../curve"))
    user_attrs: dict[str, Any] = Field(default_factory=dict)


class FidelityOut(BaseModel):
    name: str
    min: int
    max: int


class StudyOut(BaseModel):
    id: str
    name: str
    direction: Literal["minimize", "maximize"]
    space: dict[str, Any]
    seed: int
    heartbeat_timeout_s: float
    static_metrics: list[str]
    created_at: datetime
    n_trials: int
    trials_by_state: dict[str, int]
    best_trial: TrialOut | None
    transfer: TransferOut | None = None
    fidelity: FidelityOut | None = None
    deterministic: bool = False
    user_attrs: dict[str, Any] = Field(default_factory=dict)
    revision: int = Field(0, description=(
        "bumped by every change to the study's trials: poll it to know when to re-read"))
    last_activity: datetime | None = Field(None, description=(
        "the newest trial event (created, heartbeat, finished); null before any trial"))


class StudyList(BaseModel):
    """One page of studies in creation order (``order=-created``: newest first); ``total`` counts
    all that match."""

    studies: list[StudyOut]
    total: int
    offset: int
    limit: int


class CandidateMetrics(Strict):
    token: str = Field(min_length=1, max_length=64)
    static_metrics: dict[str, Number] = Field(default_factory=dict, max_length=64)

    @field_validator("static_metrics")
    @classmethod
    def _finite(cls, metrics: dict[str, float]) -> dict[str, float]:
        return finite_metrics(metrics)


class AskRequest(Strict):
    """``candidates`` answers a previous ask of a study that declares static metrics: the tokens
    it handed out, each with the metrics the client computed (some may be missing)."""

    count: StrictInt = Field(default=1, ge=1)
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    candidates: list[CandidateMetrics] | None = Field(default=None, min_length=1,
                                                      max_length=1024)


class CandidateOut(BaseModel):
    token: str
    params: dict[str, Any]


class AskResponse(BaseModel):
    """Trials to run; or, for a study with static metrics, ``candidates`` whose metrics the
    client computes and sends back in a second ask before ``expires_at``."""

    trials: list[TrialOut]
    candidates: list[CandidateOut] = []
    expires_at: datetime | None = None


class TellRequest(Strict):
    """``{"value": x}`` completes a trial; ``{"state": "failed"}`` says the infrastructure failed;
    ``{"state": "infeasible", "reason": ...}`` says the configuration itself cannot work;
    ``{"state": "stopped", "reason"?: ...}`` ends it early, keeping its last reported value."""

    value: Number | None = None
    state: Literal["complete", "failed", "infeasible", "stopped"] | None = None
    reason: str | None = Field(default=None, max_length=2000)
    static_metrics: dict[str, Number] | None = Field(default=None, max_length=64)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return finite_number(value)

    @field_validator("static_metrics")
    @classmethod
    def _finite_metrics(cls, metrics: dict[str, float] | None) -> dict[str, float] | None:
        return finite_metrics(metrics)

    @model_validator(mode="after")
    def _consistent(self) -> TellRequest:
        state = self.state or ("complete" if self.value is not None else None)
        if state is None:
            raise ValueError("give a `value`, or a `state` of failed or infeasible")
        if state == "complete" and self.value is None:
            raise ValueError("state complete needs a `value`")
        if state != "complete" and self.value is not None:
            raise ValueError(f"state {state} takes no `value`")
        self.state = state
        return self


class ReportRequest(Strict):
    """An intermediate value of a running trial at ``step`` (of the study's fidelity)."""

    step: StrictInt = Field(ge=0, le=MAX_STEP)
    value: Number

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        return finite_number(value)


class ReportResponse(BaseModel):
    should_stop: bool
    reason: str | None = None


class CurvePage(BaseModel):
    """One page of a trial's curve, ``[step, value]`` in step order (``total`` counts all)."""

    points: list[tuple[int, float]]
    total: int
    offset: int
    limit: int


class EnqueueRequest(Strict):
    """A configuration to hand out next; it may leave params out (filled when handed out)."""

    params: dict[str, ParamValue] = Field(max_length=256)
    # Return a trial of the study that already has these values instead (Optuna's option).
    skip_if_exists: StrictBool = False


MAX_IMPORT_TRIALS = 1000  # finished trials one add-trials request may record
MAX_IMPORT_POINTS = 100_000  # curve points in one add-trials request, all trials together


class FinishedTrialIn(Strict):
    """A trial that already ran elsewhere (add_trials; Optuna's ``add_trial``): a whole, valid
    configuration and its outcome. ``complete`` needs a ``value``; ``stopped`` takes its value
    from the last point of ``intermediate``, as a told stop does; failed and infeasible take
    none."""

    params: dict[str, ParamValue] = Field(max_length=256)
    state: Literal["complete", "failed", "infeasible", "stopped"] = "complete"
    value: Number | None = None
    reason: str | None = Field(default=None, max_length=2000)
    intermediate: list[tuple[StrictInt, Number]] = Field(default_factory=list,
                                                         max_length=10_000)
    user_attrs: dict[str, Any] = Field(default_factory=dict)
    static_metrics: dict[str, Number] = Field(default_factory=dict, max_length=64)
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return finite_number(value)

    @field_validator("intermediate")
    @classmethod
    def _finite_points(cls, points: list[tuple[int, float]]) -> list[tuple[int, float]]:
        steps = set()
        for step, value in points:
            if not 0 <= step <= MAX_STEP:
                raise ValueError(f"steps must be within 0..{MAX_STEP}, got {step}")
            if not math.isfinite(value):
                raise ValueError(f"values must be finite numbers, got {value} at step {step}")
            if step in steps:
                raise ValueError(f"step {step} is given twice")
            steps.add(step)
        return sorted(points)

    @field_validator("static_metrics")
    @classmethod
    def _finite_metrics(cls, metrics: dict[str, float]) -> dict[str, float]:
        return finite_metrics(metrics)

    @field_validator("started_at", "completed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone (e.g. a trailing Z)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FinishedTrialIn:
        if self.state == "complete" and self.value is None:
            raise ValueError("state complete needs a `value`")
        if self.state != "complete" and self.value is not None:
            raise ValueError(f"state {self.state} takes no `value`"
                             + (" (it is the last intermediate value)"
                                if self.state == "stopped" else ""))
        if self.state == "stopped" and not self.intermediate:
            raise ValueError("state stopped needs `intermediate` (its value is the last point)")
        if self.started_at and self.completed_at and self.completed_at < self.started_at:
            raise ValueError("`started_at <= completed_at` must hold")
        return self


class AddTrialsRequest(Strict):
    """Finished trials recorded in one all-or-nothing request."""

    trials: list[FinishedTrialIn] = Field(min_length=1, max_length=MAX_IMPORT_TRIALS)


class TrialList(BaseModel):
    trials: list[TrialOut]


class TrialPage(BaseModel):
    trials: list[TrialOut]
    total: int
    offset: int
    limit: int


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with per-field errors for 422s."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]
    retraining: str
    auth: Literal["on", "off"]


class PrunerVersionOut(BaseModel):
    version: int
    active: bool
    n_train: int
    device: str
    seconds: float
    metrics: dict[str, Any]
    created_at: datetime


class RungRuleOut(BaseModel):
    """How one rung cuts, and the evidence behind it (``engine.stopping_policy``)."""

    step: int
    keep: float  # the share of the values reported at the rung that go on
    trust: float  # the correlation the keep share was chosen from (measured, shrunk to a prior)
    measured: float | None  # Spearman of rung vs. final values (None: fewer than 3 pairs)
    pairs: int  # complete trials that reported at the rung
    wrong_stop_rate: float | None  # share of the best complete trials the trust cut would stop


class StoppingPolicyOut(BaseModel):
    """A study's early-stopping policy as its rung reports apply it now."""

    fidelity: FidelityOut | None  # None: the study declared none, so reports never stop
    curves: int  # finished trials with a curve it was calibrated on (0: the priors alone)
    rules: list[RungRuleOut]


class PrunerReport(BaseModel):
    """The pruner of one study: what serves asks now, how far it is trusted, what it did."""

    active_version: int | None
    trust: float | None  # Spearman of predictions made before trials ran vs. their results
    n_pruned: int
    retraining: str
    versions: list[PrunerVersionOut]  # newest first, one page (``versions_total`` counts all)
    versions_total: int = 0


# The dashboard's reads (``usecases.insights``). Every list is bounded by a request parameter,
# never by the study's size; ``note`` says in words how the data was sampled or binned.
MAX_INSIGHT_POINTS = 5000


class HistoryPoints(BaseModel):
    """Columns of the sampled finished trials (parallel lists)."""

    number: list[int]
    value: list[float | None]
    state: list[str]
    strategy: list[str]
    predicted: list[float | None]


class BestLine(BaseModel):
    """The best value so far, at each trial that improved it (thinned past the point limit)."""

    number: list[int]
    value: list[float]


class HistoryBin(BaseModel):
    """Consecutive finished trials: how many each strategy proposed, how many of those set a new
    best (the credit the scheduler rewards), and the mean exploration degree they were asked at."""

    first: int
    last: int
    count: int
    by_strategy: dict[str, int]
    improved_by: dict[str, int]
    exploration: float | None


class SampledInsight(BaseModel):
    """What every sampled insight says: at which revision, how many rows stood for how many."""

    direction: Literal["minimize", "maximize"]
    revision: int
    total: int
    shown: int
    sampled: bool
    note: str


class HistoryInsight(SampledInsight):
    points: HistoryPoints
    best: BestLine
    bins: list[HistoryBin]
    strategies: list[str]


class ParamsInsight(SampledInsight):
    """A sample of complete trials (for parallel coordinates and slice plots) and importance."""

    params: list[dict[str, Any]]
    trial_ids: list[int]
    numbers: list[int]
    values: list[float]
    columns: dict[str, list[Any]]
    importance: dict[str, float]
    importance_method: str


class CurveOut(BaseModel):
    trial_id: int
    number: int
    state: str
    value: float | None
    points: list[tuple[int, float]]
    thinned: bool


class CurvesInsight(BaseModel):
    revision: int
    note: str
    curves: list[CurveOut]


class MapPoints(BaseModel):
    x: list[float]
    y: list[float]
    value: list[float]
    number: list[int]
    trial_id: list[int]
    cluster: list[int]
    label: list[str]


class MapPruned(BaseModel):
    x: list[float]
    y: list[float]
    predicted: list[float]
    label: list[str]


class MapCluster(BaseModel):
    x: float
    y: float
    size: int
    median_value: float


class BestRegion(BaseModel):
    """Where the best tenth of the shown trials lie: their centre, the radius holding the half of
    them nearest to it, and which trials they are."""

    x: float
    y: float
    radius: float
    count: int
    trial_ids: list[int]


class MapInsight(BaseModel):
    revision: int
    method: str
    explained: tuple[float, float]
    total: int
    shown: int
    note: str
    points: MapPoints
    pruned: MapPruned
    clusters: list[MapCluster]
    best_region: BestRegion | None
