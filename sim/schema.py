"""File schemas: the files users write (targets, sweeps, bit plans) are pydantic v2 models, read one way.

A schema model is strict (an integer is not a float, a boolean is not a number), forbids unknown keys and
bounds every number to a physical range. ``read_toml`` and ``read_json`` turn a file into plain data with
one-line errors for what a parser meets first (not UTF-8, a byte-order mark, malformed text, duplicate keys,
nesting too deep); ``validate`` checks that data against a model and turns pydantic's first error into the
form every mixbit error takes: ``FILE: dotted.key: reason``.

Numbers that describe hardware must say where they come from: a field annotated with ``SOURCED`` (see
``SourcedTable``) needs ``source_<key>`` or the table's ``source``, and the texts end up in ``.sources``.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from sim.errors import InputError

__all__ = [
    "SOURCED",
    "FileModel",
    "SourcedTable",
    "keyed_error",
    "read_json",
    "read_text",
    "read_toml",
    "type_name",
    "validate",
]

Model = TypeVar("Model", bound=BaseModel)

#: Most levels of nesting a JSON or TOML file may have; mixbit's files have at most four.
MAX_DEPTH = 64

_BOM = b"\xef\xbb\xbf"


class _Sourced:
    """Marker in ``Annotated[...]`` metadata: this field's number needs a source."""

    def __repr__(self) -> str:
        return "SOURCED"


SOURCED = _Sourced()


def type_name(value: object) -> str:
    """How an error names a value's type: the file format's words (a table, a list), not Python's."""
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def keyed_error(key: str, reason: str) -> PydanticCustomError:
    """An error about ``key`` inside the table being validated (pydantic would blame the whole table)."""
    return PydanticCustomError("keyed", "{reason}", {"key": key, "reason": reason})


class FileModel(BaseModel):
    """Base of every file schema: strict types, no unknown keys, frozen."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class SourcedTable(FileModel):
    """A table whose ``SOURCED`` numbers each cite a source: ``source_<key> = "..."`` or the table's ``source``.

    Any other key may cite one too (``source_dataflow``); it is kept in ``sources`` but not required.

        A source is a citation (datasheet table, paper, repository file) or a text starting with ``assumption:``.
        After validation ``sources`` maps each sourced key present to its text.
    """

    sources: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def sourced_fields(cls) -> tuple[str, ...]:
        return tuple(name for name, info in cls.model_fields.items() if any(m is SOURCED for m in info.metadata))

    @model_validator(mode="before")
    @classmethod
    def _every_number_has_a_source(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "sources" in data:
            raise keyed_error("sources", f"unknown key; expected one of {', '.join(cls.allowed_keys())}")
        sourced = cls.sourced_fields()
        data = dict(data)
        texts: dict[str, str] = {}
        for key in [k for k in data if k == "source" or k.startswith("source_")]:
            name = key.removeprefix("source_") if key != "source" else ""
            if key != "source" and (name not in cls.model_fields or name == "sources"):
                raise keyed_error(key, f"unknown key; expected one of {', '.join(cls.allowed_keys())}")
            text = data.pop(key)
            if not isinstance(text, str):
                raise keyed_error(key, f"expected a string, got {type_name(text)}")
            if not text.strip():
                raise keyed_error(key, "empty source")
            texts[name] = text.strip()
        sources = {name: text for name, text in texts.items() if name and name in data}
        for name in sourced:
            if name in data:
                text = texts.get(name, texts.get(""))
                if text is None:
                    raise keyed_error(name, f'missing source (add `source_{name} = "..."` or a table `source`)')
                sources[name] = text
        data["sources"] = sources
        return data

    @classmethod
    def allowed_keys(cls) -> list[str]:
        return sorted(name for name in cls.model_fields if name != "sources")


# ---------------------------------------------------------------------------------------------------------
# Reading files


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a missing file, a BOM or bytes that are not UTF-8 are one-line errors."""
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if data.startswith(_BOM):
        raise InputError(f"{path}: starts with a UTF-8 byte-order mark (BOM); save the file as UTF-8 without BOM")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: byte {exc.start}: not UTF-8 text ({what} files are UTF-8)") from None


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; ``what`` names the kind of file in errors (``target``, ``sweep``).

    tomllib rejects duplicate keys and tables itself and gives the line; the key is read from that line.
    """
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(_toml_error(path, text, exc)) from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply for a {what} file") from None


_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")
_HEADER_LINE = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_INLINE_KEY = re.compile(r"([A-Za-z0-9_\-]+)\s*=\s*$")


def _toml_error(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """One line naming the file, the dotted key on the failing line and the reason."""
    reason = str(exc).splitlines()[0]
    # TOMLDecodeError has no lineno attribute before Python 3.14; its message says "(at line N, column M)"
    found = re.search(r"at line (\d+), column (\d+)", reason)
    lines = text.splitlines()
    if not found or not 0 < int(found.group(1)) <= len(lines):
        return f"{path}: malformed TOML ({reason})"
    line_no, column = int(found.group(1)), int(found.group(2))
    line = lines[line_no - 1]
    header = _HEADER_LINE.match(line)
    tables = [h.group(1).replace(" ", "") for h in map(_HEADER_LINE.match, lines[: line_no - 1]) if h]
    if header:
        key = header.group(1).replace(" ", "")
    else:
        match = _KEY_LINE.match(line)
        key = match.group(1).strip().replace(" ", "") if match else f"line {line_no}"
        inner = _INLINE_KEY.search(line[: column - 1]) if "{" in line[: column - 1] else None
        if match and inner and inner.group(1) != key:
            key = f"{key}.{inner.group(1)}"
        if match and tables:
            key = f"{tables[-1]}.{key}"
    inline = re.search(r"Duplicate inline table key '([^']+)'", reason)
    if inline and not header:
        key = key if key.endswith(f".{inline.group(1)}") else f"{key}.{inline.group(1)}"
        return f"{path}: {key}: duplicate key (line {line_no})"
    if "overwrite" in reason or "twice" in reason or "Duplicate" in reason:
        return f"{path}: {key}: duplicate key (line {line_no})"
    return f"{path}: {key}: malformed TOML ({reason})"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(Exception):
    pass


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: Path, what: str) -> Any:
    """The JSON file at ``path``; duplicate keys, NaN/Infinity and nesting past ``MAX_DEPTH`` are errors."""
    text = read_text(path, what)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except _DuplicateKey as exc:
        raise InputError(f"{path}: {exc.args[0]}: duplicate key (JSON objects name each key once)") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply for a {what} file (JSON)") from None
    except ValueError as exc:  # NaN/Infinity, an integer past Python's 4,300-digit conversion limit
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if _depth(data) > MAX_DEPTH:
        raise InputError(f"{path}: nested more than {MAX_DEPTH} levels deep; not a {what} file")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of JSON data, without recursion (a file nested 100,000 deep must not overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


# ---------------------------------------------------------------------------------------------------------
# Validating


def validate(model: type[Model], data: Any, path: Path | str, prefix: str = "") -> Model:
    """``model`` built from ``data``, or an InputError ``PATH: dotted.key: reason`` for its first error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {describe(model, exc.errors()[0], prefix)}") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None


def describe(model: type[BaseModel], error: Any, prefix: str = "") -> str:
    """``dotted.key: reason`` for one pydantic error, in the words mixbit's errors use."""
    loc, field, parent = _resolve(model, tuple(error["loc"]))
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "keyed":
        loc = (*loc, *str(ctx["key"]).split("."))
        reason = str(ctx["reason"])
    elif kind == "missing":
        reason = "missing table" if _is_model(field) else "missing key"
    elif kind == "extra_forbidden":
        fields = getattr(parent, "model_fields", {})
        allowed = parent.allowed_keys() if hasattr(parent, "allowed_keys") else sorted(fields)
        reason = f"unknown key; expected one of {', '.join(allowed)}"
    elif kind in ("int_type", "int_from_float"):
        reason = f"expected an integer, got {type_name(value)}"
    elif kind in ("float_type", "float_parsing"):
        reason = f"expected a number, got {type_name(value)}"
    elif kind == "finite_number":
        reason = f"must be a finite number, got {value}"
    elif kind == "string_type":
        reason = f"expected a string, got {type_name(value)}"
    elif kind == "bool_type":
        reason = f"expected true or false, got {type_name(value)}"
    elif kind in ("list_type", "tuple_type"):
        reason = f"expected a list, got {type_name(value)}"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        reason = f"expected a table, got {type_name(value)}"
    elif kind == "greater_than":
        bound = ctx["gt"]
        reason = f"must be positive, got {value}" if bound == 0 else f"must be greater than {bound}, got {value}"
    elif kind == "greater_than_equal":
        reason = f"must be at least {ctx['ge']}, got {value}"
    elif kind == "less_than_equal":
        reason = f"must be at most {ctx['le']}, got {value}"
    elif kind == "less_than":
        reason = f"must be less than {ctx['lt']}, got {value}"
    elif kind == "literal_error":
        reason = f"unknown value {value!r}; expected one of {', '.join(_choices(field, ctx))}"
    elif kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        reason = f"unknown value {ctx.get('tag')!r}; expected one of {', '.join(tags)}"
    elif kind in ("too_short", "too_long"):
        reason = f"expected {ctx.get('min_length', 1)} to {ctx.get('max_length', 'any number of')} items"
        if kind == "too_short" and ctx.get("min_length") == 1:
            reason = "expected a non-empty list"
    elif kind == "string_too_short":
        reason = "empty string"
    else:
        reason = str(error["msg"]).removeprefix("Value error, ")
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).removeprefix(".")
    key = f"{prefix}{key}" if key else prefix.rstrip(".")
    return f"{key}: {reason}" if key else reason


def _resolve(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any, Any]:
    """(loc without union tags, annotation of the failing field, model holding it)."""
    clean: list[Any] = []
    current: Any = model
    parent: Any = model
    annotation: Any = model
    for part in loc:
        annotation = _strip(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parent = annotation
            info = annotation.model_fields.get(part)
            annotation = info.annotation if info is not None else None
            clean.append(part)
        elif isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
            clean.append(part)
        elif _is_union(annotation):
            arms = [a for a in typing.get_args(annotation) if _is_model(_strip(a))]
            tagged = [a for a in arms if str(getattr(_strip(a), "TAG", "")) == part]
            if tagged:
                annotation = _strip(tagged[0])
            else:
                clean.append(part)
                annotation = None
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
            clean.append(part)
        else:
            clean.append(part)
            annotation = None
        current = annotation
    return tuple(clean), current, parent


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arms) == 1:
            return _strip(arms[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    annotation = _strip(annotation)
    if _is_union(annotation):
        return all(_is_model(a) for a in typing.get_args(annotation) if a is not type(None))
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _choices(annotation: Any, ctx: dict[str, Any]) -> list[str]:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    return [part.strip(" '") for part in re.split(r",| or ", str(ctx.get("expected", ""))) if part.strip(" '")]
