"""Following a pickle's opcodes without unpickling it: the stack and memo a pickle machine would hold,
each object it would build kept as a description only (a `Made` of a `Global`), nothing imported or
called. One step per opcode, in a table; an opcode the table lacks is refused. What BUILD does with an
object's state is the caller's business first (joblib_stream steps over the arrays joblib writes
there)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Unscannable(Exception):
    """The file cannot be read as a pickle the scan can follow; the message says why."""


@dataclass(frozen=True, slots=True)
class Global:
    module: str
    name: str


class Made:
    """An object the pickle would build (`func(*args)`), kept as a description only."""

    __slots__ = ("args", "func", "state")

    def __init__(self, func: Any, args: Any) -> None:
        self.func = func
        self.args = args
        self.state: Any = None


MARK = object()
UNKNOWN = object()
"""What the scan does not follow: a value no array wrapper reads."""

OnBuild = Callable[["Machine", Any], bool]
"""Called on BUILD with the state popped (the object is on top of the stack); True when it handled it."""


class Machine:
    def __init__(self, on_build: OnBuild) -> None:
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self._on_build = on_build

    def step(self, name: str, arg: Any) -> None:
        step = _STEPS.get(name)
        if step is None:
            raise Unscannable(f"it uses the pickle opcode {name}, which the scan does not follow")
        step(self, name, arg)

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        stack = self.stack
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is MARK:
                items = stack[i + 1 :]
                del stack[i:]
                return items
        raise Unscannable("a pickle opcode needs a mark the stream never set")

    # -- the steps that are more than one call -----------------------------------------------

    def tuple_of(self, name: str, _arg: Any) -> None:
        n = int(name[-1])
        items = self.stack[-n:]
        del self.stack[-n:]
        self.push(tuple(items))

    def drop(self, _name: str, _arg: Any) -> None:
        self.pop()

    def drop_mark(self, name: str, _arg: Any) -> None:
        self.pop_mark()
        if name == "FROZENSET":
            self.push(UNKNOWN)

    def add_to_list(self, name: str, _arg: Any) -> None:
        items = [self.pop()] if name == "APPEND" else self.pop_mark()
        if isinstance(self.stack[-1], list):
            self.stack[-1].extend(items)

    def add_to_dict(self, name: str, _arg: Any) -> None:
        items = [self.stack.pop(-2), self.pop()] if name == "SETITEM" else self.pop_mark()
        if isinstance(self.stack[-1], dict):
            self.stack[-1].update(_dict(items))

    def put(self, _name: str, arg: Any) -> None:
        self.memo[_memo_key(arg)] = self.stack[-1]

    def memoize(self, _name: str, _arg: Any) -> None:
        self.memo[len(self.memo)] = self.stack[-1]

    def get(self, _name: str, arg: Any) -> None:
        key = _memo_key(arg)
        if key not in self.memo:
            raise Unscannable(f"a pickle opcode reads memo {arg}, which was never stored")
        self.push(self.memo[key])

    def stack_global(self, _name: str, _arg: Any) -> None:
        attr, module = self.pop(), self.pop()
        ok = isinstance(module, str) and isinstance(attr, str)
        self.push(Global(module, attr) if ok else UNKNOWN)

    def obj(self, _name: str, _arg: Any) -> None:
        items = self.pop_mark()
        if not items:
            raise Unscannable("an OBJ opcode with nothing to call")
        self.push(Made(items[0], tuple(items[1:])))

    def reduce(self, _name: str, _arg: Any) -> None:
        args = self.pop()
        self.push(Made(self.pop(), args))

    def newobj_ex(self, _name: str, _arg: Any) -> None:
        del self.stack[-2:]  # args and kwargs: never a joblib array wrapper's
        self.push(Made(self.pop(), UNKNOWN))

    def unknown(self, _name: str, _arg: Any) -> None:
        self.push(UNKNOWN)

    def persistent_id(self, _name: str, _arg: Any) -> None:
        self.stack[-1] = UNKNOWN

    def build(self, _name: str, _arg: Any) -> None:
        state = self.pop()
        if not self._on_build(self, state) and isinstance(self.stack[-1], Made):
            self.stack[-1].state = state


def _memo_key(arg: Any) -> int:
    if type(arg) is not int:
        raise Unscannable(f"a pickle memo key is {arg!r}, not a number")
    return arg


def _dict(items: list[Any]) -> dict[Any, Any]:
    """Keys and values, alternating. Keys that are not hashable here (a list, say) cannot be a
    wrapper's field names: dropped."""
    out: dict[Any, Any] = {}
    for key, value in zip(items[0::2], items[1::2], strict=True):
        try:
            out[key] = value
        except TypeError:
            continue
    return out


def _global(arg: Any) -> Global:
    module, _, attr = str(arg).partition(" ")
    return Global(module, attr)


Step = Callable[[Machine, str, Any], None]

_LITERALS = (
    *("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"),
    *("STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"),
    *("BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"),
)
_CONSTANTS: dict[str, Callable[[], Any]] = {
    "NONE": lambda: None,
    "NEWTRUE": lambda: True,
    "NEWFALSE": lambda: False,
    "EMPTY_TUPLE": tuple,
    "EMPTY_LIST": list,
    "EMPTY_DICT": dict,
    "EMPTY_SET": lambda: UNKNOWN,
}
_STEPS: dict[str, Step] = {
    **dict.fromkeys(_LITERALS, lambda m, _name, arg: m.push(arg)),
    **dict.fromkeys(_CONSTANTS, lambda m, name, _arg: m.push(_CONSTANTS[name]())),
    "MARK": lambda m, _name, _arg: m.push(MARK),
    **dict.fromkeys(("TUPLE1", "TUPLE2", "TUPLE3"), Machine.tuple_of),
    "TUPLE": lambda m, _name, _arg: m.push(tuple(m.pop_mark())),
    "LIST": lambda m, _name, _arg: m.push(m.pop_mark()),
    "DICT": lambda m, _name, _arg: m.push(_dict(m.pop_mark())),
    **dict.fromkeys(("FROZENSET", "POP_MARK", "ADDITEMS"), Machine.drop_mark),
    **dict.fromkeys(("APPEND", "APPENDS"), Machine.add_to_list),
    **dict.fromkeys(("SETITEM", "SETITEMS"), Machine.add_to_dict),
    "POP": Machine.drop,
    "DUP": lambda m, _name, _arg: m.push(m.stack[-1]),
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT"), Machine.put),
    "MEMOIZE": Machine.memoize,
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), Machine.get),
    "GLOBAL": lambda m, _name, arg: m.push(_global(arg)),
    "STACK_GLOBAL": Machine.stack_global,
    "INST": lambda m, _name, arg: m.push(Made(_global(arg), tuple(m.pop_mark()))),
    "OBJ": Machine.obj,
    **dict.fromkeys(("REDUCE", "NEWOBJ"), Machine.reduce),
    "NEWOBJ_EX": Machine.newobj_ex,
    "BUILD": Machine.build,
    **dict.fromkeys(
        ("EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "PERSID"), lambda m, _name, _arg: m.push(UNKNOWN)
    ),
    "BINPERSID": Machine.persistent_id,
    **dict.fromkeys(("PROTO", "FRAME", "READONLY_BUFFER", "STOP"), lambda _m, _name, _arg: None),
}
"""What each opcode does to the stack and memo, as far as the scan follows them."""
