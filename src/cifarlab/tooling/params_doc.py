"""docs/parameters.md, generated from the schema: `Params` (cifarlab.core.params) and the model
builders' signatures (cifarlab.models). The text of every row is one field's `description`; the
allowed values and the default come from its type.

    python -m cifarlab.tooling.params_doc > docs/parameters.md

tests/test_schema.py fails while docs/parameters.md differs from what this prints.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cifarlab.core.params import TOP_KEYS, DataParams, Params, Recipe, RunEntry, TrainParams

COMMAND = "python -m cifarlab.tooling.params_doc > docs/parameters.md"

HEADER = f"""# Parameters (`params.yaml`)

<!-- Generated from the schema ({COMMAND}): edit the `description` of a field in
src/cifarlab/core/params.py, or of a builder's argument in src/cifarlab/models/, not this page. -->

Every stage validates the whole file before any work: an unknown key, a wrong type or an
out-of-range value stops it with one line naming the key and what is allowed, exit code 2.
`params.yaml`'s own comments say what is specific to the reports: the sources of values, and the
choices a report left OPEN ([runs.md](runs.md#choices-the-reports-left-open)).
"""

TABLE_HEAD = "| key | allowed | default | meaning |\n| --- | --- | --- | --- |"


def _code(value: Any) -> str:
    """A value as YAML writes it, as inline code."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(_code(v).strip("`") for v in value) + "]`"
    if isinstance(value, Mapping):
        return "`{" + ", ".join(f"{k}: {_code(v).strip('`')}" for k, v in value.items()) + "}`"
    return f"`{value}`"


BOUNDS = ((at.Ge, "≥", "ge"), (at.Gt, ">", "gt"), (at.Le, "≤", "le"), (at.Lt, "<", "lt"))


def _bounds(metadata: list) -> str:
    out = []
    for m in metadata:
        for cls, sign, attr in BOUNDS:
            if isinstance(m, cls):
                out.append(f"{sign} {getattr(m, attr)}")
    return " and ".join(out)


def allowed(annotation: Any, metadata: list = ()) -> str:
    """What a type accepts, in words: `true`/`false`, the values of a Literal, a number with its
    bounds, a list of ..., `or null`."""
    titled = [m.title for m in metadata if isinstance(m, FieldInfo) and m.title]
    if titled:  # a named kind of text: "run name"
        return titled[0]
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        return allowed(base, [*metadata, *extra, *(m for e in extra for m in getattr(e, "metadata", []))])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return " or ".join([allowed(a, metadata) for a in rest] + (["`null`"] if len(rest) < len(args) else []))
    if origin is Literal:
        return ", ".join(_code(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of ({allowed(args[0])})"
        return f"list of {len(args)} ({allowed(args[0])})"
    if annotation is bool:
        return "`true`, `false`"
    if annotation in (int, float):
        word = {int: "integer", float: "number"}[annotation]
        limits = _bounds(metadata)
        return f"{word} {limits}" if limits else word
    if annotation is str:
        patterns = [m.pattern for m in metadata if getattr(m, "pattern", None)]
        return f"text matching `{patterns[0]}`" if patterns else "text"
    if origin is Mapping or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "mapping"
    raise TypeError(f"no words for the type {annotation!r}: add them to allowed()")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _code(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, BaseModel):
        return "its keys' defaults"
    return _code(field.default)


def _row(key: str, field: FieldInfo) -> str:
    kind = field.title or allowed(field.annotation, field.metadata)
    return f"| `{key}` | {kind} | {_default(field)} | {field.description} |"


def option_field(parameter: inspect.Parameter) -> FieldInfo:
    """A builder argument (`Annotated[type, Field(...)] = default`) as a pydantic field."""
    field = FieldInfo.from_annotation(parameter.annotation)
    field.default = parameter.default
    return field


def parameters_doc() -> str:
    """The text of docs/parameters.md."""
    from cifarlab.models import list_models, model_info

    top = Params.model_fields
    rows = [_row(k, top[k]) for k in TOP_KEYS if k not in ("data", "train", "runs")]
    rows += [_row(f"data.{k}", f) for k, f in DataParams.model_fields.items()]
    rows += [_row(f"train.{k}", f) for k, f in TrainParams.model_fields.items()]
    rows += [
        _row("runs", top["runs"]),
        _row("runs.<run>.model", RunEntry.model_fields["model"]),
        "| `runs.<run>.<key>` | as `<model>.<key>` | the section's | the run's value of a key of its model's "
        "section (an override) |",
    ]
    models = list_models()
    section = top[models[0]].description.replace(f"`{models[0]}`", "`<model>`")
    rows.append(f"| `<model>` | mapping | | {section} |")
    rows += [_row(f"<model>.{k}", f) for k, f in Recipe.model_fields.items()]
    options = [_row(f"{m}.{k}", option_field(p)) for m in models for k, p in model_info(m).arch_params.items()]
    no_options = [m for m in models if not model_info(m).arch_params]
    return "\n".join(
        [
            HEADER,
            "## Keys\n",
            TABLE_HEAD,
            *rows,
            "",
            "## Architecture options\n",
            "The keyword arguments of each model's builder (`src/cifarlab/models/<model>.py`), checked against its "
            f"signature; {', '.join(f'`{m}`' for m in no_options)} take none.\n",
            TABLE_HEAD,
            *options,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    if argv if argv is not None else sys.argv[1:]:
        sys.exit(f"usage: {COMMAND}")
    sys.stdout.write(parameters_doc())


if __name__ == "__main__":
    main()
