"""Errors: one hierarchy, and APIError parsed from the server's problem document."""

from __future__ import annotations

import pytest

from dyesp_client import APIError, ConnectionFailed, DyespError, FieldError, Infeasible
from sdk_fakes import ScriptedResponse


def test_problem_document_is_parsed_into_api_error() -> None:
    response = ScriptedResponse(422, {
        "type": "about:blank", "title": "Unprocessable Content", "status": 422,
        "detail": "space.params[1].high: `low <= high` must hold, got low=1.0, high=0.1",
        "errors": [{"field": "space.params[1].high",
                    "message": "`low <= high` must hold, got low=1.0, high=0.1"}]})
    error = APIError.from_response(response)
    assert (error.status, error.title) == (422, "Unprocessable Content")
    assert error.errors == [FieldError("space.params[1].high",
                                       "`low <= high` must hold, got low=1.0, high=0.1")]
    assert str(error) == ("422 Unprocessable Content: space.params[1].high: "
                          "`low <= high` must hold, got low=1.0, high=0.1")


def test_a_proxy_error_page_becomes_the_detail() -> None:
    error = APIError.from_response(ScriptedResponse(502, None, text="<html>Bad gateway</html>"))
    assert (error.status, error.title, error.errors) == (502, "Bad Gateway", [])
    assert "Bad gateway" in error.detail


def test_a_long_body_is_shortened_in_the_message() -> None:
    error = APIError.from_response(ScriptedResponse(500, None, text="x" * 5000))
    assert len(error.detail) < 600


def test_every_sdk_error_is_a_dyesp_error() -> None:
    for error in (APIError(404, "Not Found", "gone"), ConnectionFailed("down"), Infeasible()):
        with pytest.raises(DyespError):
            raise error


def test_infeasible_keeps_its_reason() -> None:
    assert Infeasible("OOM at batch 512").reason == "OOM at batch 512"
    assert Infeasible().reason is None
