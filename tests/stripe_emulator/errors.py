"""Stripe's error responses: one exception type that renders Stripe's JSON error shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class StripeError(Exception):
    """An API error as Stripe returns it: an HTTP status and an ``{"error": {...}}`` body.

    Raised anywhere inside request handling; the server turns it into the response, so a
    handler never builds error JSON by hand and every error has the same shape.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.error_type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if request_id is not None:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}?t=0"
        error.update(self.extra)
        return {"error": error}


def invalid_request(
    message: str, *, code: str | None = None, param: str | None = None, status: int = 400
) -> StripeError:
    return StripeError(status, message, code=code, param=param)


def no_such(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> StripeError:
    """Stripe's ``resource_missing``: 404 for the object in the path, 400 for a referenced one."""
    return StripeError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def require(
    table: Mapping[str, T], object_id: str, kind: str, *, param: str = "id", status: int = 404
) -> T:
    """``table[object_id]``, or Stripe's ``resource_missing`` for it."""
    found = table.get(object_id)
    if found is None:
        raise no_such(kind, object_id, param=param, status=status)
    return found


def parameter_unknown(param: str) -> StripeError:
    return StripeError(
        400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param
    )


def parameter_missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def parameters_exclusive(*params: str) -> StripeError:
    names = ", ".join(params)
    return StripeError(
        400,
        f"You may only specify one of these parameters: {names}.",
        code="parameters_exclusive",
        param=params[-1],
    )


def invoice_not_editable(message: str, *, param: str | None = None) -> StripeError:
    return StripeError(400, message, code="invoice_not_editable", param=param)
