"""Python client for DyESP, a search-as-a-service for hyperparameter-architecture search.

Example::

    from dyesp_client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        study = client.create_study("toy", [{"name": "x", "type": "float", "low": -5, "high": 5}])
        best = study.optimize(lambda trial: (trial.params["x"] - 2) ** 2, n_trials=20)
        print(best.params, best.value)
"""

from dyesp_client._client import Client, HTTPClient, HTTPResponse
from dyesp_client._errors import (
    APIError,
    ConnectionFailed,
    DyespError,
    FieldError,
    Infeasible,
    TrialStopped,
)
from dyesp_client._optimize import optimize
from dyesp_client._retry import RetryPolicy
from dyesp_client._study import Fidelity, Study, Trial, TrialState
from dyesp_client._version import __version__

__all__ = [
    "APIError",
    "Client",
    "ConnectionFailed",
    "DyespError",
    "Fidelity",
    "FieldError",
    "HTTPClient",
    "HTTPResponse",
    "Infeasible",
    "RetryPolicy",
    "Study",
    "Trial",
    "TrialState",
    "TrialStopped",
    "__version__",
    "optimize",
]
