"""Typed configs: dataclasses built from YAML mappings and `key=value` overrides, every value checked.

One mechanism for every config in prunetune (recipes, recovery methods, scorer options): `build(cls,
data)` coerces each value by its field's annotation (int, float, bool, str, Literal choices, lists,
mappings, nested dataclasses, `X | None`), applies the bounds in the field's metadata, and names the key
in every error (`seed: expected an integer, got 'abc'`). One override syntax and one parser:
`a.b.c=value`. A field's documentation is the string literal written under it, as in the rest of the code.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import math
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from prunetune.errors import UserError, did_you_mean

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NULL = ("", "null", "none", "~")
_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


class Raw(str):
    """Text from a command-line override: parsed by the type of the field it lands in, not by YAML rules."""


INT_LIMIT = 2**31 - 1
"""The largest integer any field takes unless its own bounds say otherwise (a count, a step, a size:
past it a value is a typo, and Python's unbounded ints would overflow later in torch, numpy or floats)."""
FLOAT_LIMIT = 1e12
"""The largest magnitude of a float field without bounds of its own."""
SEED_MAX = 2**32 - 1
"""Seeds are 0 .. 2**32-1 (what numpy and torch's generators take)."""


def bounded(default=dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, **kw):
    """A dataclass field whose numeric value is checked against the given bounds when built (a field with
    no upper bound of its own is still held to INT_LIMIT / FLOAT_LIMIT, as every numeric field is)."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, metadata=meta, **kw)


# ---- reading -----------------------------------------------------------------------------------
def parse_overrides(items: list[str], base: dict | None = None) -> dict:
    """`a.b.c=value` items laid, in order, over a copy of `base` (nested mappings of `Raw` texts).

    A later item wins; an item that sets a whole section (`recovery.config={}`) replaces it.
    """
    out: dict = copy.deepcopy(base or {})
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise UserError(f"override '{item}' must look like key=value (dotted keys for sections)")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node.get(part), Raw):  # e.g. recovery.config={} then recovery.config.max_steps=3
                node[part] = parse_scalar(node[part])
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise UserError(f"override '{item}' conflicts with '{part}' set earlier")
            node = node[part]
        node[parts[-1]] = Raw(raw)
    return out


def read_yaml(path: str | Path, what: str = "recipe") -> dict:
    """A YAML file holding a mapping; every failure is a one-line UserError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file '{path}' does not exist")
    if p.stat().st_size > YAML_MAX_BYTES:
        raise UserError(f"{what} '{path}' is {p.stat().st_size:,} bytes; a recipe is a small file (at most {YAML_MAX_BYTES:,})")
    try:
        data = _load_bounded(p.read_text(encoding="utf-8"), f"{what} '{path}'")
    except UnicodeDecodeError:
        raise UserError(f"{what} '{path}' is not UTF-8 text") from None
    except RecursionError:
        raise UserError(f"{what} '{path}' is nested too deeply (at most {YAML_MAX_DEPTH} levels)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError(f"{what} '{path}' is not valid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} '{path}' must be a mapping of keys, got {type(data).__name__}")
    return data


YAML_MAX_BYTES, YAML_MAX_DEPTH, YAML_MAX_NODES = 1_000_000, 32, 100_000
"""A recipe is a small file: bounds on its size, nesting and (aliases expanded) number of values."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML lets the last silently win)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen and key != "<<":
                    raise UserError(f"key '{key}' is given twice (line {key_node.start_mark.line + 1}); keep one")
                seen.add(key)
        return super().construct_mapping(node, deep)


def _load_bounded(text: str, what: str):
    """yaml.safe_load with bounds on depth and on values counted with aliases expanded (no alias bomb),
    and duplicate keys refused."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        count, stack = 0, [(node, 1)]
        while stack:
            n, depth = stack.pop()
            count += 1
            if depth > YAML_MAX_DEPTH:
                raise UserError(f"{what} is nested too deeply (at most {YAML_MAX_DEPTH} levels)")
            if count > YAML_MAX_NODES:
                raise UserError(f"{what} expands to more than {YAML_MAX_NODES:,} values (aliases included); a recipe is small")
            if isinstance(n, yaml.SequenceNode):
                stack += [(c, depth + 1) for c in n.value]
            elif isinstance(n, yaml.MappingNode):
                stack += [(c, depth + 1) for kv in n.value for c in kv]
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_scalar(raw: str) -> Any:
    """Override text for a field of no declared type: YAML for `{...}` / `[...]`, else a scalar or the text."""
    text = raw.strip()
    if text.lower() in _NULL:
        return None
    if _FLOAT.fullmatch(text) and not _INT.fullmatch(text):
        return float(text)  # YAML 1.1 reads 1e-3 as a string
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, dict | list) and not text.startswith(("{", "[")):
        return raw  # e.g. template=Question: {question} is text, not a mapping
    return _plain(value)


def _plain(value):
    if isinstance(value, Raw):
        return parse_scalar(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- building ----------------------------------------------------------------------------------
def build(cls, data: Any, path: str = ""):
    """An instance of dataclass `cls` from a mapping; unknown keys and ill-typed values name the key.

    A class may define `upgrade_keys(data, path) -> data` (a staticmethod) to read keys that older
    recipes spell differently; it runs first, on a copy of the mapping.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path or 'the config'}: expected a mapping of keys, got {_show(data)}")
    upgrade = getattr(cls, "upgrade_keys", None)
    if upgrade is not None:  # a config's own shim for keys older recipes spell differently
        data = upgrade(dict(data), path)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise UserError(f"unknown key '{full}'{did_you_mean(key, fields)}")
        kwargs[key] = _check_bounds(coerce(value, hints[key], full), fields[key].metadata, full)
        _check_limits(kwargs[key], full, fields[key].metadata)
    return cls(**kwargs)


def coerce_field(cls, name: str, value: Any, key: str) -> Any:
    """`value` checked as field `name` of dataclass `cls` (its type and bounds); errors name `key`."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return _check_bounds(coerce(value, typing.get_type_hints(cls)[name], key), f.metadata, key)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp`, or a UserError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return _plain(value)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else build(tp, _plain_map(value, key), key)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, Raw) and value.strip().lower() in _NULL):
            if type(None) in args:
                return None
        errors = []
        options = [a for a in args if a is not type(None)]
        if isinstance(value, Raw) and value.strip().startswith(("[", "{")):
            options.sort(key=lambda a: a is str)  # `[q_proj]` is a list before it is text
        for option in options:
            try:
                return coerce(value, option, key)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[-1] if len(errors) == 1 else f"{key}: {_show(value)} is not a valid value ({_names(tp)})")
    if origin is Literal:
        text = str(value).strip() if isinstance(value, Raw) else value
        if text is None and "none" in args:  # `sharding=none` inside an untyped mapping was read as null
            text = "none"
        if text not in args:
            raise UserError(
                f"{key}: must be one of {', '.join(map(str, args))}, got {_show(value)}{did_you_mean(text, args)}"
            )
        return text
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise UserError(f"{key}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            if len(value.strip()) > 24:  # int() of thousands of digits is itself an error
                raise UserError(f"{key}: must be at most {INT_LIMIT} in size, got a {len(value.strip())}-digit number")
            return int(value)
        raise UserError(f"{key}: expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            out = float(value)
        else:
            raise UserError(f"{key}: expected a number, got {_show(value)}")
        if not math.isfinite(out):
            raise UserError(f"{key}: expected a finite number, got {_show(value)}")
        return out
    if tp is str:
        if isinstance(value, str):
            return str(value)
        raise UserError(f"{key}: expected a string, got {_show(value)}")
    if origin is list:
        if isinstance(value, Raw):
            value = _plain(Raw(value)) if value.strip().startswith("[") else [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise UserError(f"{key}: expected a list, got {_show(value)}")
        return [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict or tp is dict:
        value = _plain_map(value, key)
        if not args:
            return _plain(value)
        try:
            return {coerce(k, args[0], key): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
        except UserError as e:
            raise UserError(f"{e} (a mapping like {{2: 1}}, with a space after each colon)") from None
    raise TypeError(f"config field '{key}' has an annotation the builder does not know: {tp!r}")


def _plain_map(value, key: str) -> dict:
    if isinstance(value, Raw):
        value = parse_scalar(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{key}: expected a mapping, got {_show(value)}")
    return {k: (Raw(v) if isinstance(v, Raw) else v) for k, v in value.items()}


def _check_bounds(value, meta, key: str):
    if value is None or not meta or isinstance(value, bool):
        return value
    for name, test, word in (
        ("ge", lambda v, b: v >= b, "at least"),
        ("gt", lambda v, b: v > b, "greater than"),
        ("le", lambda v, b: v <= b, "at most"),
        ("lt", lambda v, b: v < b, "less than"),
    ):
        if name in meta and not test(value, meta[name]):
            raise UserError(f"{key}: must be {word} {meta[name]}, got {value}")
    return value


def _check_limits(value, key: str, meta=None) -> None:
    """The default bounds of every number in `value` (lists and mappings too) whose field sets no upper one."""
    if meta and ("le" in meta or "lt" in meta):
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) and not -INT_LIMIT <= value <= INT_LIMIT:
        raise UserError(f"{key}: must be at most {INT_LIMIT} in size, got {_short(value)}")
    if isinstance(value, float) and not abs(value) <= FLOAT_LIMIT:
        raise UserError(f"{key}: must be at most {FLOAT_LIMIT:g} in size, got {value:g}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_limits(k, key)
            _check_limits(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_limits(v, f"{key}[{i}]")


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 20 else f"{text[:8]}...({len(text)} digits)"


def bounded_flag(kind=int, *, ge=None, gt=None, le=None, lt=None):
    """An argparse `type` that parses a number and checks bounds the same way as config fields do (with the
    same default limits), so `--limit 10**30` is the one-line error, not an overflow later."""
    import argparse

    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}

    def parse(text: str):
        try:
            value = coerce(str(text), kind, "value")
            _check_bounds(value, meta, "value")
            _check_limits(value, "value", meta)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("value: ")) from None
        return value

    parse.__name__ = kind.__name__
    return parse


def _show(value) -> str:
    return repr(str(value)) if isinstance(value, str) else repr(value)


def _names(tp) -> str:
    return " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(tp))


# ---- describing --------------------------------------------------------------------------------
@functools.cache
def field_docs(cls) -> dict[str, str]:
    """Each field's documentation: the string literal under it in the class body (base classes too)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for stmt, nxt in zip(body, body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(getattr(nxt, "value", None), ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(cls) -> list[tuple[str, str, str]]:
    """(name, default, documentation) for each field of dataclass `cls`: what `ls -v` and --help print."""
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        out.append((f.name, default, docs.get(f.name, "")))
    return out


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)
