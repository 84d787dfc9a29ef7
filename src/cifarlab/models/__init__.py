"""The model registry: every architecture cifarlab trains, by name (style of torchvision.models._api).

One module per model, named after it (`cifarlab/models/<name>.py`; `_*` modules are shared code),
imported on first use: `get_model("lenet5")` imports lenet5.py and no other model, so a run's
stages depend on the registry, the shared blocks and their own model's file only, and a new model
is one new file (the listing: cifarlab.core.model_names, which needs no torch).

A model is registered with `@register_model(name, report=..., description=...)`
over a *builder*: a function taking ONLY keyword-only, annotated, defaulted arguments (the
architecture options that params.yaml may set) and returning an `nn.Module` that maps an already
normalized float tensor (B, 3, 32, 32) to logits (B, 10). The builder's signature is the schema of
its options, the one place each is declared: `Annotated[type, Field(constraints, description=...)]`
(bool, int, float, Literal[...], str | None, tuple[int, ...]; the description is its row of
docs/parameters.md). `check_options` validates values against it, for params.yaml and for
`get_model` alike, so a builder receives only values its signature allows and checks none again.

    >>> from cifarlab.models import get_model, list_models
    >>> list_models()[:3]
    ['alexnet_transfer', 'cnn', 'custom_resnet']
    >>> net = get_model("resnet18", activation="tanh")
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Strict, TypeAdapter, ValidationError
from torch import nn

from cifarlab.core.errors import CifarlabError, ParamsError
from cifarlab.core.model_names import model_names

__all__ = ["ModelInfo", "register_model", "list_models", "get_model", "model_info", "check_options"]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model."""

    name: str
    builder: Builder
    report: str  # which report it reproduces, "000" .. "004" (its numbers: reports/reference.yaml)
    description: str
    embedding: bool  # the model has `embed(x) -> (B, D)` features (a PCA figure can be drawn)
    # The builder's options, name -> inspect.Parameter (annotation resolved to a real type, default set).
    arch_params: dict[str, inspect.Parameter]


_MODELS: dict[str, ModelInfo] = {}
_CHECKERS: dict[str, dict[str, TypeAdapter]] = {}  # model -> option -> validator of its annotation


def _arch_params(name: str, fn: Builder) -> dict[str, inspect.Parameter]:
    # eval_str: resolve string annotations (a module using `from __future__ import annotations`)
    # now, so the config code always sees real types.
    sig = inspect.signature(fn, eval_str=True)
    params: dict[str, inspect.Parameter] = {}
    for p in sig.parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"model {name!r}: builder argument {p.name!r} must be keyword-only")
        if p.annotation is inspect.Parameter.empty:
            raise TypeError(f"model {name!r}: builder argument {p.name!r} needs a type annotation")
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"model {name!r}: builder argument {p.name!r} needs a default")
        params[p.name] = p
    return params


def _checker(annotation: Any) -> TypeAdapter:
    # strict for bool so `skip: "no"` is refused rather than guessed at; no inf or nan anywhere
    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation
    if base is bool:
        annotation = Annotated[annotation, Strict()]
    return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))


def register_model(name: str, *, report: str, description: str, embedding: bool = False) -> Callable[[B], B]:
    """Decorator: register `fn` as the builder of model `name` (returns `fn` unchanged)."""

    def wrapper(fn: B) -> B:
        module = fn.__module__
        if module.startswith(f"{__name__}.") and module != f"{__name__}.{name}":
            raise ValueError(f"model {name!r} is registered in {module}: its file must be named after it ({name}.py)")
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        arch_params = _arch_params(name, fn)
        _CHECKERS[name] = {k: _checker(p.annotation) for k, p in arch_params.items()}
        _MODELS[name] = ModelInfo(
            name=name,
            builder=fn,
            report=report,
            description=description,
            embedding=embedding,
            arch_params=arch_params,
        )
        return fn

    return wrapper


def list_models() -> list[str]:
    """Registered model names, sorted (none of their modules imported)."""
    return model_names()


def model_info(name: str) -> ModelInfo:
    """The registry entry of `name`, its module imported on first use; unknown name ->
    CifarlabError listing the known ones."""
    if name not in _MODELS:
        if name not in model_names():
            raise CifarlabError(f"unknown model {name!r}; known: {', '.join(list_models())}")
        importlib.import_module(f"{__name__}.{name}")
        if name not in _MODELS:
            raise CifarlabError(f"src/cifarlab/models/{name}.py registers no model named {name!r}")
    return _MODELS[name]


def check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of model `name` given in `options`, validated against its builder's signature
    (in its order; bool strictly, `"no"` is no bool); names that are no option of the builder are
    left out, for the caller to refuse. A bad value -> ParamsError
    `bad value for '<name>.<option>': <value> (<what is allowed>)`, the first in signature order."""
    model_info(name)  # registers the model's checkers
    checked = {}
    for key, checker in _CHECKERS[name].items():
        if key in options:
            try:
                checked[key] = checker.validate_python(options[key])
            except ValidationError as err:
                raise ParamsError(
                    f"bad value for '{name}.{key}': {options[key]!r} ({err.errors()[0]['msg']})"
                ) from None
    return checked


def get_model(name: str, **arch) -> nn.Module:
    """Build model `name` with architecture options `arch` (the builder's keyword arguments).

    Unknown name or unknown option -> CifarlabError (one line); a value the builder's signature
    does not allow -> ParamsError (`check_options`).
    """
    info = model_info(name)
    unknown = sorted(set(arch) - set(info.arch_params))
    if unknown:
        allowed = ", ".join(info.arch_params) or "(none)"
        raise CifarlabError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; options: {allowed}")
    return info.builder(**check_options(name, arch))
