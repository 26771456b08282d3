"""A study's trials as a table: a pandas DataFrame shaped like Optuna's ``trials_dataframe``, and
the server's CSV export streamed to a file."""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from dyesp_client._errors import APIError

if TYPE_CHECKING:
    import pandas

    from dyesp_client._study import Study

__all__ = ["DEFAULT_ATTRS", "OPTUNA_STATES", "trials_csv", "trials_dataframe"]

DEFAULT_ATTRS = ("number", "value", "datetime_start", "datetime_complete", "duration", "params",
                 "user_attrs", "state")
# Optuna's state names, so ``df[df.state == "COMPLETE"]`` keeps working; ``infeasible`` has no
# Optuna counterpart and keeps its own name rather than pass for a failure.
OPTUNA_STATES = {"complete": "COMPLETE", "stopped": "PRUNED", "failed": "FAIL",
                 "running": "RUNNING", "waiting": "WAITING", "infeasible": "INFEASIBLE"}


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("study.trials_dataframe() needs pandas, an optional dependency: "
                          "pip install 'dyesp-client[pandas]'") from None
    return pandas


def trials_dataframe(study: Study, attrs: Sequence[str] = DEFAULT_ATTRS) -> pandas.DataFrame:
    """One row per trial in number order; ``params`` and ``user_attrs`` become one column per
    name (``params_lr``, ``user_attrs_note``; a param inactive in a trial is NaN/None), as in
    Optuna. Times are UTC-aware; ``duration`` is completion minus start."""
    pandas = _pandas()
    unknown = set(attrs) - set(DEFAULT_ATTRS)
    if unknown:
        raise ValueError(f"attrs must be among {DEFAULT_ATTRS}, got {sorted(unknown)}")
    trials = study.trials()
    param_names = sorted({name for t in trials for name in t.params})
    attr_keys = sorted({key for t in trials for key in t.user_attrs})
    rows = []
    for trial in trials:
        row: dict[str, Any] = {}
        for attr in attrs:
            if attr == "params":
                row.update({f"params_{n}": trial.params.get(n) for n in param_names})
            elif attr == "user_attrs":
                row.update({f"user_attrs_{k}": trial.user_attrs.get(k) for k in attr_keys})
            elif attr == "datetime_start":
                row[attr] = trial.started_at
            elif attr == "datetime_complete":
                row[attr] = trial.completed_at
            elif attr == "duration":
                row[attr] = (trial.completed_at - trial.started_at
                             if trial.completed_at and trial.started_at else None)
            elif attr == "state":
                row[attr] = OPTUNA_STATES.get(trial.state, trial.state.upper())
            else:
                row[attr] = getattr(trial, attr)
        rows.append(row)
    frame = pandas.DataFrame(rows)
    for column in ("datetime_start", "datetime_complete"):
        if column in frame:
            frame[column] = pandas.to_datetime(frame[column], utc=True)
    if "duration" in frame:
        frame["duration"] = pandas.to_timedelta(frame["duration"])
    return frame


def trials_csv(study: Study, path_or_file: str | os.PathLike[str] | IO[Any]) -> None:
    """Write the server's ``trials.csv`` of ``study`` to a path or an open file (binary or
    text), streamed: the export is never held whole in memory when the HTTP client streams
    (httpx, httpx2 and starlette's TestClient do). Not retried: a broken download may have
    written part of the file."""
    client = study.client
    url = f"{client.url}{study._path}/trials.csv"
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "wb") as out:
            _download(client, url, out)
    else:
        _download(client, url, path_or_file)


def _download(client: Any, url: str, out: IO[Any]) -> None:
    write = _writer(out)
    stream = getattr(client._http, "stream", None)
    if stream is None:  # an injected client without streaming: one response
        response = client._http.request("GET", url, headers=client._headers)
        if response.status_code >= 400:
            raise APIError.from_response(response)
        write(response.content if hasattr(response, "content") else response.text.encode())
        write(b"", final=True)
        return
    with stream("GET", url, headers=client._headers) as response:
        if response.status_code >= 400:
            response.read()
            raise APIError.from_response(response)
        for chunk in response.iter_bytes():
            write(chunk)
    write(b"", final=True)


def _writer(out: IO[Any]) -> Any:
    """Bytes to ``out``, decoded as UTF-8 (split characters kept whole) if it is a text file."""
    if not isinstance(out, io.TextIOBase):
        return lambda chunk, final=False: out.write(chunk) if chunk else None
    decoder = codecs.getincrementaldecoder("utf-8")()
    return lambda chunk, final=False: out.write(decoder.decode(chunk, final))
