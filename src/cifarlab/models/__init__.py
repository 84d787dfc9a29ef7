"""The model registry: every architecture cifarlab trains, by name (style of torchvision.models._api).

One module per model, named after it (`cifarlab/models/<name>.py`; `_*` modules are shared code),
imported on first use: `get_model("lenet5")` imports lenet5.py and no other model, so a run's
stages depend on the registry, the shared blocks and their own model's file only, and a new model
is one new file (the listing: cifarlab.core.model_names, which needs no torch).

A model is registered with `@register_model(name, report=..., description=...)`
over a *builder*: a function taking ONLY keyword-only, annotated, defaulted arguments (the
architecture options that params.yaml may set) and returning an `nn.Module` that maps an already
normalized float tensor (B, 3, 32, 32) to logits (B, 10). The builder's signature is the schema of
its options: the config code validates params against `model_info(name).arch_params`, so the
annotations are precise (bool, int, float, Literal[...], str | None, tuple[int, ...]).

    >>> from cifarlab.models import get_model, list_models
    >>> list_models()[:3]
    ['alexnet_transfer', 'cnn', 'custom_resnet']
    >>> net = get_model("resnet18", activation="tanh")
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Callable, TypeVar

from torch import nn

from cifarlab.core.errors import CifarlabError
from cifarlab.core.model_names import model_names

__all__ = ["ModelInfo", "register_model", "list_models", "get_model", "model_info"]

NUM_CLASSES = 10  # CIFAR-10, always: builders take no num_classes

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


def register_model(
    name: str, *, report: str, description: str, embedding: bool = False
) -> Callable[[B], B]:
    """Decorator: register `fn` as the builder of model `name` (returns `fn` unchanged)."""

    def wrapper(fn: B) -> B:
        module = fn.__module__
        if module.startswith(f"{__name__}.") and module != f"{__name__}.{name}":
            raise ValueError(f"model {name!r} is registered in {module}: its file must be named after it ({name}.py)")
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelInfo(
            name=name,
            builder=fn,
            report=report,
            description=description,
            embedding=embedding,
            arch_params=_arch_params(name, fn),
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


def get_model(name: str, **arch) -> nn.Module:
    """Build model `name` with architecture options `arch` (the builder's keyword arguments).

    Unknown name or unknown option -> CifarlabError (one line). Option values are checked by
    the config code against `arch_params`; builders additionally reject out-of-range values.
    """
    info = model_info(name)
    unknown = sorted(set(arch) - set(info.arch_params))
    if unknown:
        allowed = ", ".join(info.arch_params) or "(none)"
        raise CifarlabError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; options: {allowed}")
    return info.builder(**arch)
