"""Stripe's conventions for parameters every resource shares: expand, metadata, currency."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import currencies
from ..errors import invalid_request
from ..schema import UNSET
from .context import Params


def expansions(params: Params, allowed: Iterable[str], *, prefix: str = "") -> set[str]:
    requested: list[str] = params.get("expand") or []
    wanted: set[str] = set()
    for index, path in enumerate(requested):
        bare = path[len(prefix) :] if prefix and path.startswith(prefix) else path
        if (prefix and not path.startswith(prefix)) or bare not in allowed:
            raise invalid_request(
                f"This property cannot be expanded ({path}).", param=f"expand[{index}]"
            )
        wanted.add(bare)
    return wanted


def merge_metadata(
    value: Any, current: dict[str, str] | None = None, *, param: str
) -> dict[str, str]:
    """Stripe's metadata semantics: ``metadata=`` clears, ``metadata[k]=`` removes one key."""
    result = dict(current or {})
    if value is UNSET:
        return {}
    for key, item in value.items():
        if item is UNSET:
            result.pop(key, None)
        else:
            if len(key) > 40:
                raise invalid_request(
                    f"Metadata keys can have up to 40 characters, but you passed in a key "
                    f"with {len(key)} characters.",
                    param=f"{param}[{key}]",
                )
            if len(item) > 500:
                raise invalid_request(
                    f"Metadata values can have up to 500 characters, but you passed in a "
                    f"value with {len(item)} characters.",
                    param=f"{param}[{key}]",
                )
            result[key] = item
    if len(result) > 50:
        raise invalid_request(
            f"You can have up to 50 metadata keys, but you passed in {len(result)} keys.",
            param=param,
        )
    return result


def supported_currency(value: str, *, param: str) -> str:
    if value != value.lower() or value not in currencies.SUPPORTED:
        raise invalid_request(
            f"Invalid currency: {value}. Stripe currently supports these currencies: "
            + ", ".join(sorted(currencies.SUPPORTED)),
            param=param,
        )
    return value


def reject_unsupported(params: Params, names: Iterable[str]) -> None:
    for name in names:
        if name in params and params[name] is not UNSET:
            raise invalid_request(
                f"The Stripe emulator does not support the `{name}` parameter.", param=name
            )
