"""Request validation derived from the installed stripe-python's ``stripe.params`` TypedDicts.

The TypedDicts are generated from Stripe's OpenAPI spec for the pinned API version, so walking
their type hints gives the parameters Stripe accepts: a parameter the installed library does not
know (``unit_amount`` on invoice items, removed in 2025-03-31.basil) is unknown here too.
Upgrading stripe-python upgrades the emulator's validation with it.

Mapping from hints to checks:

* keys of the TypedDict -> allowed parameters; ``__required_keys__`` -> ``parameter_missing``;
  anything else -> ``parameter_unknown`` (``param`` in Stripe's bracket notation).
* ``Literal['a', 'b'] | str`` -> an enum of ``a``/``b``. stripe-python adds ``| str`` only so that
  new server-side values don't break old clients; Stripe itself rejects unknown values.
* ``Literal[''] | X`` -> the empty string is accepted and means "unset" (:data:`UNSET`).
* ``int``/``float``/``Decimal``/``bool`` -> parsed from the form string (Stripe's messages).
* ``List[X]`` -> ``a[0]=..&a[1]=..`` (or ``a[]=``), ``Dict[str, X]`` -> ``a[key]=..``.
"""

from __future__ import annotations

import re
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ForwardRef, Literal, NotRequired, Required, Union, get_args, get_origin

import stripe.params
from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

from .errors import StripeError, invalid_request, parameter_missing, parameter_unknown
from .forms import bracket_path


class _Unset:
    """The value of a parameter sent as an empty string: "remove this value"."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()

_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")
_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


class Node:
    """One parameter's expected shape; ``check`` returns the parsed value or raises."""

    kind = "value"

    def check(self, value: Any, path: list[str]) -> Any:
        raise NotImplementedError

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, str)


@dataclass
class AnyNode(Node):
    kind = "value"

    def check(self, value: Any, path: list[str]) -> Any:
        return value

    def accepts_shape(self, value: Any) -> bool:
        return True


@dataclass
class StrNode(Node):
    enum: frozenset[str] | None = None
    allow_empty: bool = False
    kind = "string"

    def check(self, value: Any, path: list[str]) -> Any:
        name = bracket_path(path)
        if not isinstance(value, str):
            raise invalid_request(f"Invalid string: {_describe(value)}", param=name)
        if value == "":
            if self.allow_empty:
                return UNSET
            raise _invalid_empty(name)
        if self.enum is not None and value not in self.enum:
            raise invalid_request(f"Invalid {name}: must be {_one_of(self.enum)}", param=name)
        return value


@dataclass
class IntNode(Node):
    kind = "integer"

    def check(self, value: Any, path: list[str]) -> Any:
        name = bracket_path(path)
        if value == "":
            raise _invalid_empty(name)
        if not isinstance(value, str) or not _INTEGER.match(value):
            raise StripeError(
                400,
                f"Invalid integer: {_describe(value)}",
                code="parameter_invalid_integer",
                param=name,
            )
        number = int(value)
        if abs(number) >= 2**63:
            raise StripeError(
                400,
                f"This value must be less than or equal to {2**63 - 1} "
                f"(it currently is '{value}').",
                code="parameter_invalid_integer",
                param=name,
            )
        return number


@dataclass
class FloatNode(Node):
    kind = "float"

    def check(self, value: Any, path: list[str]) -> Any:
        name = bracket_path(path)
        if value == "":
            raise _invalid_empty(name)
        if not isinstance(value, str) or not _DECIMAL.match(value):
            raise invalid_request(f"Invalid float: {_describe(value)}", param=name)
        return float(value)


@dataclass
class DecimalNode(Node):
    kind = "decimal"

    def check(self, value: Any, path: list[str]) -> Any:
        name = bracket_path(path)
        if value == "":
            raise _invalid_empty(name)
        if not isinstance(value, str) or not _DECIMAL.match(value):
            raise invalid_request(f"Invalid decimal: {_describe(value)}", param=name)
        try:
            number = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
            raise invalid_request(f"Invalid decimal: {value}", param=name) from exc
        if -number.as_tuple().exponent > 12:  # type: ignore[operator]
            raise invalid_request(
                f"Invalid decimal: {value} (at most 12 decimal places are allowed)", param=name
            )
        return number


@dataclass
class BoolNode(Node):
    allowed: frozenset[bool] = frozenset({True, False})
    kind = "boolean"

    def check(self, value: Any, path: list[str]) -> Any:
        name = bracket_path(path)
        if value == "":
            raise _invalid_empty(name)
        if value not in ("true", "false"):
            raise invalid_request(f"Invalid boolean: {_describe(value)}", param=name)
        parsed = value == "true"
        if parsed not in self.allowed:
            raise invalid_request(f"Invalid {name}: must be {str(not parsed).lower()}", param=name)
        return parsed


@dataclass
class ObjNode(Node):
    """A TypedDict: the keys it declares, the ones it requires."""

    name: str
    fields: dict[str, Node] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    kind = "hash"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, path: list[str]) -> Any:
        if not isinstance(value, dict):
            raise invalid_request(f"Invalid object: {bracket_path(path)}", param=bracket_path(path))
        result: dict[str, Any] = {}
        for key in value:
            if key not in self.fields:
                raise parameter_unknown(bracket_path([*path, key]))
        for key in sorted(self.required):
            if key not in value:
                raise parameter_missing(bracket_path([*path, key]))
        for key, raw in value.items():
            result[key] = self.fields[key].check(raw, [*path, key])
        return result


@dataclass
class ListNode(Node):
    item: Node
    kind = "array"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, list) or (
            isinstance(value, dict) and all(key.isdigit() for key in value)
        )

    def check(self, value: Any, path: list[str]) -> Any:
        name = bracket_path(path)
        if isinstance(value, dict):
            if not all(key.isdigit() for key in value):
                raise invalid_request("Invalid array", param=name)
            items = [value[key] for key in sorted(value, key=int)]
            indexes = [str(index) for index in sorted(int(key) for key in value)]
        elif isinstance(value, list):
            items = value
            indexes = [str(index) for index in range(len(value))]
        else:
            raise invalid_request("Invalid array", param=name)
        return [
            self.item.check(item, [*path, index])
            for item, index in zip(items, indexes, strict=True)
        ]


@dataclass
class MapNode(Node):
    value_node: Node
    kind = "hash"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, path: list[str]) -> Any:
        if not isinstance(value, dict):
            raise invalid_request(f"Invalid object: {bracket_path(path)}", param=bracket_path(path))
        return {key: self.value_node.check(raw, [*path, key]) for key, raw in value.items()}


@dataclass
class UnionNode(Node):
    options: list[Node]
    allow_unset: bool = False
    kind = "value"

    def accepts_shape(self, value: Any) -> bool:
        return (self.allow_unset and value == "") or any(
            option.accepts_shape(value) for option in self.options
        )

    def check(self, value: Any, path: list[str]) -> Any:
        if value == "" and self.allow_unset:
            return UNSET
        candidates = [option for option in self.options if option.accepts_shape(value)]
        if not candidates:
            kinds = " or ".join(sorted({option.kind for option in self.options}))
            raise invalid_request(
                f"Invalid {bracket_path(path)}: expected {kinds}", param=bracket_path(path)
            )
        first_error: StripeError | None = None
        for option in candidates:
            try:
                return option.check(value, path)
            except StripeError as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise first_error


def _invalid_empty(name: str) -> StripeError:
    return StripeError(
        400,
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' "
        "from your request or supply a non-empty value.",
        code="parameter_invalid_empty",
        param=name,
    )


def _one_of(values: frozenset[str]) -> str:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    if len(ordered) == 2:
        return f"one of {ordered[0]} or {ordered[1]}"
    return "one of " + ", ".join(ordered[:-1]) + f", or {ordered[-1]}"


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "an object" if isinstance(value, dict) else "an array"


class SchemaBuilder:
    """Turns a TypedDict class into a :class:`Node` tree, caching by class (shapes recur)."""

    def __init__(self) -> None:
        self._cache: dict[type, ObjNode] = {}

    def build(self, typed_dict: type, *, top_level: bool) -> ObjNode:
        cached = self._cache.get(typed_dict)
        if cached is not None:
            return cached
        node = ObjNode(name=typed_dict.__name__)
        self._cache[typed_dict] = node
        namespace = vars(sys.modules[typed_dict.__module__])
        required: set[str] = set(getattr(typed_dict, "__required_keys__", frozenset()))
        for key, annotation in typed_dict.__annotations__.items():
            if top_level and key in _REQUEST_OPTION_KEYS:
                required.discard(key)
                continue
            hint = annotation
            origin: Any = get_origin(hint)
            if origin is NotRequired:
                required.discard(key)
                hint = get_args(hint)[0]
            elif origin is Required:
                required.add(key)
                hint = get_args(hint)[0]
            node.fields[key] = self._node(hint, namespace)
        node.required = frozenset(required)
        return node

    def _node(self, hint: Any, namespace: dict[str, Any]) -> Node:
        hint = _resolve(hint, namespace)
        if hint is Any or hint is object:
            return AnyNode()
        if is_typeddict(hint):
            return self.build(hint, top_level=False)
        origin = get_origin(hint)
        if origin is Union or origin is types.UnionType:
            return self._union(list(get_args(hint)), namespace)
        if origin is Literal:
            return self._union([hint], namespace)
        if origin in (list, tuple):
            return ListNode(self._node(get_args(hint)[0], namespace))
        if origin is dict:
            return MapNode(_map_value(self._node(get_args(hint)[1], namespace)))
        if origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject":
            args = get_args(hint)
            return MapNode(_map_value(self._node(args[0], namespace) if args else AnyNode()))
        if hint is str:
            return StrNode()
        if hint is bool:
            return BoolNode()
        if hint is int:
            return IntNode()
        if hint is float:
            return FloatNode()
        if hint is Decimal:
            return DecimalNode()
        if isinstance(hint, type) and hint.__name__ == "UntypedStripeObject":
            return MapNode(AnyNode())
        if hint is type(None):
            return AnyNode()
        return AnyNode()

    def _union(self, members: list[Any], namespace: dict[str, Any]) -> Node:
        literal_strings: set[str] = set()
        literal_bools: set[bool] = set()
        has_str = False
        others: list[Node] = []
        for member in members:
            member = _resolve(member, namespace)
            if get_origin(member) is Literal:
                for value in get_args(member):
                    if isinstance(value, bool):
                        literal_bools.add(value)
                    elif isinstance(value, str):
                        literal_strings.add(value)
            elif member is str:
                has_str = True
            elif member is type(None):
                continue
            else:
                others.append(self._node(member, namespace))
        allow_unset = "" in literal_strings
        enum = frozenset(literal_strings - {""})
        options: list[Node] = list(others)
        if enum:
            options.insert(0, StrNode(enum=enum))
        elif has_str:
            options.insert(0, StrNode())
        if literal_bools:
            options.insert(0, BoolNode(allowed=frozenset(literal_bools)))
        if len(options) == 1 and not allow_unset:
            return options[0]
        if len(options) == 1 and isinstance(options[0], StrNode):
            return StrNode(enum=options[0].enum, allow_empty=True)
        return UnionNode(options, allow_unset=allow_unset)


def _map_value(node: Node) -> Node:
    """``metadata[key]=`` unsets one key, so string map values accept the empty string."""
    if isinstance(node, StrNode):
        return StrNode(enum=node.enum, allow_empty=True)
    return node


def _resolve(hint: Any, namespace: dict[str, Any]) -> Any:
    if isinstance(hint, str):
        hint = ForwardRef(hint)
    if isinstance(hint, ForwardRef):
        return eval(hint.__forward_arg__, namespace)  # noqa: S307 - stripe's own annotations
    return hint


_builder = SchemaBuilder()
_builder_lock = threading.Lock()


def schema_for(params_class_name: str) -> ObjNode:
    """The validator for ``stripe.params.<params_class_name>`` (built once, then cached)."""
    typed_dict = getattr(stripe.params, params_class_name)
    with _builder_lock:
        return _builder.build(typed_dict, top_level=True)


def validate(params_class_name: str, params: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = schema_for(params_class_name).check(params, [])
    return result


Validator = Callable[[dict[str, Any]], dict[str, Any]]
