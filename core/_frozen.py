"""A quicker ``__init__`` for frozen dataclasses on the hot path.

A frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, name, value)``, looked up and called once per field: ~1.4 us for
eight fields here, most of the cost of making a ``TokenUsage`` or a ``Cost`` per LLM call. The
same assignments through each slot's own descriptor (slotted classes: no lookup by name; 7,400
instructions for a ``TokenUsage`` against 12,800 generated) or one update of the instance's dict
(the others) take half of that or less. The class stays the dataclass it was: same fields,
signature, defaults, equality, hash, repr, and assignment still raises ``FrozenInstanceError``."""

from __future__ import annotations

import dataclasses
import types
from typing import Any, TypeVar

__all__ = ["quick_init"]

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Replace a frozen dataclass's ``__init__`` with one of the same signature that sets its
    fields at once. Only for plain fields (positional, no factory, no ``__post_init__``)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # a dataclass: checked just above
    if hasattr(cls, "__post_init__") or any(
        not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING or not f.name.isidentifier()
        or f.name in ("self", "_set", "_setattr") or f.name.startswith(("_d_", "_s_"))  # the names the made __init__ uses
        for f in fields
    ):
        raise TypeError(f"{cls.__name__} has fields quick_init does not set (init=False, kw_only, a factory, "
                        "__post_init__, or a name its __init__ uses)")
    names = [f.name for f in fields]
    defaults = {f"_d_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    signature = ", ".join(f"{n}=_d_{n}" if f"_d_{n}" in defaults else n for n in names)
    namespace: dict[str, Any] = {"_setattr": object.__setattr__, **defaults}
    setters = {n: _slot_setter(cls, n) for n in names} if "__slots__" in cls.__dict__ else {}
    if setters and all(setters.values()):
        # Each slot's own descriptor sets it: no attribute lookup by name, as object.__setattr__ makes.
        namespace.update({f"_s_{n}": setter for n, setter in setters.items()})
        body = "\n".join(f" _s_{n}(self, {n})" for n in names)
    elif setters:  # a field with no slot of its own to set (shadowed in a base by something else)
        body = "\n".join([" _set = _setattr.__get__(self)", *(f" _set({n!r}, {n})" for n in names)])
    else:
        body = " self.__dict__.update({" + ", ".join(f"{n!r}: {n}" for n in names) + "})"
    exec(f"def __init__(self, {signature}) -> None:\n{body}\n", namespace)  # noqa: S102 - code made from the fields' names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def _slot_setter(cls: type, name: str) -> Any:
    """The ``__set__`` of the slot that holds ``name`` (in the class or a base), or None."""
    for klass in cls.__mro__:
        found = klass.__dict__.get(name)
        if found is not None:
            return found.__set__ if isinstance(found, types.MemberDescriptorType) else None
    return None
