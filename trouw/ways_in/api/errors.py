"""The API's one error body, its documented status codes, and the handlers that answer with it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("trouw.api")


class ErrorDetail(BaseModel):
    """One problem: the field it concerns (dotted path, "" for the request as a whole) and why."""

    field: str = Field(description='Dotted path such as "lines.0.qty"; "" for the whole request.')
    message: str = Field(description="One line, in plain words, saying what to change.")


class ErrorBody(BaseModel):
    """Every error the API answers (4xx and 5xx) has this body; `detail` is never empty."""

    detail: list[ErrorDetail] = Field(min_length=1)


class ApiError(Exception):
    """Raised by a route to answer with an ErrorBody; handled once, in `install_error_handlers`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


# What each status means on this API, said once; routes pick the ones they can answer.
ERROR_MEANINGS: dict[int, str] = {
    400: "The body is not what the provider's format allows (not JSON, not a form, wrong shape).",
    401: "No valid credential: a missing, unknown or revoked API key, or a bad signature.",
    403: "The API key is valid but lacks the scope this route needs.",
    404: "Something the request names does not exist (customer, order, product, voucher, key).",
    405: "The path exists but not with this method; `Allow` lists the methods it has.",
    409: "The request conflicts with what is stored: an order of another customer, an erased "
    "customer.",
    413: "The body is larger than the limit; the message gives the limit in bytes.",
    503: "The database (or, for the admin routes that ask it, Temporal) cannot be reached right "
    "now; nothing was stored. Retry after the `Retry-After` header's seconds.",
    422: "The request breaks a rule: a field of the wrong type or form (the schema says which "
    "forms are allowed), JSON nested too deep, or a value the checks behind the schema refuse "
    "(such as an invalid locale tag or phone number). Each problem names its field.",
}


def error_body(message: str, field: str = "") -> dict[str, Any]:
    """The error body as plain JSON, for the rare answer built without an exception."""
    return {"detail": [{"field": field, "message": message}]}


def error_response(
    status: int, message: str, *, field: str = "", headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer in the one error body."""
    return JSONResponse(
        status_code=status, content=error_body(message, field), headers=dict(headers or {})
    )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries for these statuses, each with the one error body."""
    return {
        status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]} for status in statuses
    }


def with_one_error_body(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with FastAPI's default 422 model replaced by ErrorBody.

    FastAPI documents a 422 `HTTPValidationError` (loc/msg/type) on any route that does not
    declare its own; the handlers below answer ErrorBody, so that is what the document says.
    """
    schemas = document.get("components", {}).get("schemas", {})
    if "HTTPValidationError" not in schemas:
        return document
    default = "#/components/schemas/HTTPValidationError"
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for answer in operation.get("responses", {}).values():
                for media in answer.get("content", {}).values():
                    if media.get("schema", {}).get("$ref") == default:
                        media["schema"] = {"$ref": "#/components/schemas/ErrorBody"}
    schemas.pop("HTTPValidationError")
    schemas.pop("ValidationError", None)
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="{model}"))
    return document


def _field(location: Iterable[Any], body: Any) -> str:
    # "body" (and "query", "path") only say where the field was: the name is what callers fix.
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # A union told apart by `type` (the events) puts the type's value before the field name.
    if len(parts) > 1 and isinstance(body, dict) and parts[0] == body.get("type"):
        parts = parts[1:]
    return ".".join(str(part) for part in parts)


def _field_of(error: Mapping[str, Any], body: Any) -> str:
    field = _field(error.get("loc", ()), body)
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        # The tag itself (`type`) is missing or unknown: name it, not the object holding it.
        tag = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
        return ".".join(part for part in (field, tag) if part)
    return field


def _message(error: Mapping[str, Any]) -> str:
    text = str(error.get("msg") or "invalid")
    return text.removeprefix("Value error, ").removeprefix("Assertion failed, ")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path: Starlette's 405 names only the first route's.

    Each method is tried against the routing table (included routers answer for their routes).
    """
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with ErrorBody: validation, HTTP errors, ApiError."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"field": _field_of(error, exc.body), "message": _message(error)}
            for error in exc.errors()
        ] or [{"field": "", "message": "invalid request"}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is down, unreachable or its pool exhausted: nothing was stored, and the
        # same request will work later. 503 + Retry-After tells tills and webshops to retry.
        log.error("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
        settings = getattr(request.app.state, "trouw", None)
        seconds = settings.settings.api_retry_after_seconds if settings is not None else 5
        return error_response(
            503,
            "the database cannot be reached right now: nothing was stored; retry later",
            headers={"Retry-After": str(seconds)},
        )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, field=exc.field, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        if isinstance(exc.detail, list):
            return JSONResponse(
                status_code=exc.status_code, content={"detail": exc.detail}, headers=headers
            )
        return error_response(exc.status_code, str(exc.detail), headers=headers)
