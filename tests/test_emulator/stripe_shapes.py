"""Checks a rendered Stripe object against the installed stripe-python's annotated classes.

stripe-python's resource classes (``stripe.Refund``, ``stripe.CreditNote``...) and their nested
classes (``stripe.Refund.DestinationDetails``...) are generated from Stripe's OpenAPI spec for the
pinned API version, with a type hint per field. :func:`shape_problems` walks an object with those
hints and lists every place where the emulator disagrees:

* a key the class does not declare (Stripe would never send it);
* a declared field whose hint is not ``Optional`` but is missing or ``null`` (Stripe always sends
  it, and never as ``null``);
* a value of the wrong JSON type (``"12"`` for an ``int``, a dict for a ``str``...);
* a ``Literal`` field (``object``) with another value.

What the hints cannot say: ``Optional`` means "nullable *or* sent only in some states" alike, so
whether an absent optional field should be ``null`` instead comes from Stripe's spec, case by
case (``OMITTED_NOT_NULL`` in ``test_shapes.py``).
"""

from __future__ import annotations

import json
import sys
import types
from decimal import Decimal, InvalidOperation
from typing import Any, ForwardRef, Literal, Union, get_args, get_origin

import stripe
from stripe._list_object import ListObject
from stripe._stripe_object import StripeObject, UntypedStripeObject

JSONValue = Any


def wire(obj: StripeObject) -> dict[str, Any]:
    """The JSON the emulator sent for ``obj``, before stripe-python parsed it."""
    response = obj.last_response
    assert response is not None
    body: dict[str, Any] = json.loads(response.body)
    return body


def declared_fields(cls: type) -> dict[str, Any]:
    """The fields a stripe-python class annotates (its ``ClassVar`` constants aside)."""
    return {
        name: hint
        for name, hint in cls.__annotations__.items()
        if "ClassVar" not in str(hint) and not name.startswith("_")
    }


def _resolve(hint: Any, owner: type) -> Any:
    if isinstance(hint, str):
        hint = ForwardRef(hint)
    if isinstance(hint, ForwardRef):
        name = hint.__forward_arg__
        module = vars(sys.modules[owner.__module__])
        if name in module:
            return module[name]
        # stripe imports its resource classes lazily (``getattr`` loads them on first use), and
        # some modules import them under another name only for type checkers
        # (``Refund as RefundResource`` in ``_credit_note.py``).
        return getattr(stripe, name.removesuffix("Resource"))
    return hint


def _nullable(hint: Any) -> bool:
    origin = get_origin(hint)
    return (origin is Union or origin is types.UnionType) and type(None) in get_args(hint)


def shape_problems(obj: JSONValue, cls: type, path: str = "") -> list[str]:
    """Every disagreement between ``obj`` (parsed JSON) and stripe-python's class ``cls``."""
    problems: list[str] = []
    _check_object(obj, cls, path or cls.__name__, problems)
    return problems


def _check_object(obj: JSONValue, cls: type, path: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{path}: expected an object ({cls.__name__}), got {obj!r}")
        return
    fields = declared_fields(cls)
    for key in obj:
        if key not in fields:
            problems.append(f"{path}.{key}: not a field of {cls.__qualname__}")
    for name, raw_hint in fields.items():
        hint = _resolve(raw_hint, cls)
        if name not in obj:
            if not _nullable(hint):
                problems.append(f"{path}.{name}: missing (always sent, not Optional)")
            continue
        _check_value(obj[name], hint, cls, f"{path}.{name}", problems)


def _check_value(value: JSONValue, hint: Any, owner: type, path: str, problems: list[str]) -> None:
    hint = _resolve(hint, owner)
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        members = [member for member in get_args(hint) if member is not type(None)]
        if value is None:
            if len(members) == len(get_args(hint)):
                problems.append(f"{path}: null, but the field is not Optional")
            return
        attempts: list[list[str]] = []
        for member in members:
            found: list[str] = []
            _check_value(value, member, owner, path, found)
            if not found:
                return
            attempts.append(found)
        closest: list[str] = min(attempts, key=len)
        problems.extend(closest)
        return
    if value is None:
        problems.append(f"{path}: null, but the field is not Optional")
        return
    if origin is Literal:
        if value not in get_args(hint):
            problems.append(f"{path}: {value!r} is not one of {get_args(hint)}")
        return
    if origin in (list, tuple):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {value!r}")
            return
        for index, item in enumerate(value):
            _check_value(item, get_args(hint)[0], owner, f"{path}[{index}]", problems)
        return
    if origin is ListObject or hint is ListObject:
        _check_list_object(value, get_args(hint), owner, path, problems)
        return
    if origin is UntypedStripeObject or hint is UntypedStripeObject or origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map, got {value!r}")
        return
    if isinstance(hint, type) and issubclass(hint, StripeObject):
        _check_object(value, hint, path, problems)
        return
    _check_scalar(value, hint, path, problems)


def _check_list_object(
    value: JSONValue, args: tuple[Any, ...], owner: type, path: str, problems: list[str]
) -> None:
    if not isinstance(value, dict) or value.get("object") != "list":
        problems.append(f"{path}: expected a list object, got {value!r}")
        return
    if set(value) != {"object", "data", "has_more", "url"}:
        problems.append(f"{path}: a list object has object, data, has_more, url: {sorted(value)}")
    item_hint = args[0] if args else Any
    for index, item in enumerate(value.get("data", [])):
        _check_value(item, item_hint, owner, f"{path}.data[{index}]", problems)


def _check_scalar(value: JSONValue, hint: Any, path: str, problems: list[str]) -> None:
    if hint is Any:
        return
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is Decimal:
        # Decimal fields travel as strings ("1099.5"), which stripe-python parses.
        ok = isinstance(value, str) and _is_decimal(value)
    else:
        problems.append(f"{path}: the checker does not know the hint {hint!r}")
        return
    if not ok:
        problems.append(f"{path}: {value!r} is not a {getattr(hint, '__name__', hint)}")


def _is_decimal(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True
