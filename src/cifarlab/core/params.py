"""params.yaml -> frozen, validated config.

Every stage calls `load_params()` before doing any work, so a typo costs a one-line error
(exit code 2), not an hour of training. Validation is strict:

- a file that is not UTF-8 or not YAML, writes a key twice, or whose top level is no mapping is
  refused with its line and column (core.params_file), whichever loader reads it;
- an unknown key anywhere is refused and the allowed keys are named;
- values are type-checked (`lr: fast` is refused) and range-checked (epochs >= 1, ...);
- `model` and every entry of `models` must be registered models, each with its section;
- each model section is a training *recipe* (the `Recipe` fields, shared by all models) plus
  that model's architecture options, which are the keyword arguments of its registered
  builder (so `resnet18.activation` is checked against the builder's `Literal[...]`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Callable, Collection, Literal, Mapping

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from cifarlab.core.errors import ParamsError
from cifarlab.core.model_names import model_names
from cifarlab.core.params_file import read_params_file
from cifarlab.core.paths import PARAMS_FILE

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"


class _Strict(BaseModel):
    # frozen: config is read-only once validated; extra=forbid: typos are errors, not ignored;
    # allow_inf_nan=False: an lr of .inf or .nan (valid YAML floats) is refused, not trained on.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _md5_is_text(v: Any) -> Any:
    """An md5 can be all digits (or digits around one `e`): YAML then reads it as a number (an int,
    or inf), which no longer spells the digest. Say so, with the quoting that keeps it text."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        raise ValueError("read as a number, not text: quote the 32 hex digits, e.g. "
                         "cifarlab set 'data.md5=\"0123...\"' or dvc exp run -S 'data.md5=\"0123...\"'")
    return v


class DataParams(_Strict):
    url: str = OFFICIAL_URL
    md5: Annotated[str, BeforeValidator(_md5_is_text), Field(pattern=r"^[0-9a-f]{32}$")] = OFFICIAL_MD5
    # Total images kept per split, stratified by class and chosen with `seed`; null = all.
    train_subset: Annotated[int, Field(ge=10)] | None = None
    test_subset: Annotated[int, Field(ge=10)] | None = None
    # Fraction of train held out (stratified, seeded) to pick the epoch and stop early on;
    # 0 = none, as in the reports (which picked on test).
    val_split: Annotated[float, Field(ge=0, lt=1)] = 0.0


class TrainParams(_Strict):
    # Cap on every recipe's epoch count for smoke runs; null = each recipe's own count.
    # A capped run lays the recipe's schedule out over the capped epochs (see schedules.py).
    max_epochs: Annotated[int, Field(ge=1)] | None = None
    # The numerics of a run, the same on every device (benchmarks/bench_cpu.py measures them):
    # bf16 autocast (matmuls and convolutions in bf16, weights and optimizer state in fp32) ...
    bf16: bool = True
    # ... on NHWC (channels_last) tensors, the layout oneDNN's and cuDNN's bf16 kernels want ...
    channels_last: bool = True
    # ... with torch's fused optimizer kernels (one kernel updates every parameter; the same
    # update as the default foreach path, rounded differently) where the optimizer has them.
    fused_optimizer: bool = True
    eval_batch_size: Annotated[int, Field(ge=1)] = 500
    # CPU threads: they change the numbers (float sums split over threads round differently), so
    # stages depend on this key; null = the cores available, which differs machine to machine.
    num_threads: Annotated[int, Field(ge=1)] | None = 2
    # CUDA: deterministic algorithms (and the cuBLAS workspace they need), no cuDNN autotuning.
    # CPU runs are bit-reproducible either way.
    deterministic: bool = True
    # torch.compile the training step (forward, loss and their backward), on every device alike:
    # it changes a run's last bits, so it is a param, never resolved per machine.
    compile: bool = False
    # torch.compile mode; "reduce-overhead" replays the step as CUDA graphs (one launch per graph)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "reduce-overhead"
    # Resume-state cadence: data/resume/<run>.pt is rewritten when this many minutes have passed
    # since the last write (0 = after every epoch). A kill loses at most this much training; the
    # numbers do not depend on it (a resumed run gives the same bytes), so no stage hashes it.
    checkpoint_minutes: Annotated[float, Field(ge=0)] = 10.0


def _parse_ratio(v: Any) -> Any:
    """Accept `2:1:1` (handy with `dvc exp run -S resnet18.lr_ratio=5:3:2`) or `2_1_1` (the form
    used in run names and file names) as well as a list."""
    if isinstance(v, str) and (":" in v or "_" in v):
        try:
            return [float(p) for p in v.replace("_", ":").split(":")]
        except ValueError:
            return v  # let pydantic name the bad value
    return v


Ratio = Annotated[tuple[Annotated[float, Field(gt=0)], ...], BeforeValidator(_parse_ratio)]


class Recipe(_Strict):
    """How one model is trained. Field docs are the param reference in README."""

    optimizer: Literal["sgd", "adam"]
    lr: Annotated[float, Field(gt=0)]  # for onecycle: the peak (max) lr
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0  # sgd only
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    batch_size: Annotated[int, Field(ge=1)]
    epochs: Annotated[int, Field(ge=1)]
    # constant | multistep (lr x gamma at the boundaries of `lr_ratio`) | step (x gamma every
    # `step_size` epochs) | onecycle (per batch, peak `lr`)
    schedule: Literal["constant", "multistep", "step", "onecycle"] = "constant"
    lr_ratio: Ratio | None = None  # multistep: share of the epochs spent at each lr, e.g. 2:1:1
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    step_size: Annotated[int, Field(ge=1)] | None = None
    early_stopping_patience: Annotated[int, Field(ge=1)] | None = None  # epochs without test-loss gain
    grad_clip: Annotated[float, Field(gt=0)] | None = None  # clip each gradient element to +-value
    augment: Literal["none", "crop_flip", "crop_flip_blur_color"] = "none"
    crop_padding: Literal["zeros", "reflect"] = "zeros"  # the 4 pixels a random crop may reach past the edge
    # dataset: the training split's mean/std (stats.json); cifar10_common: the constants public
    # recipes hard-code (std ~0.20); imagenet; none: [0, 1]
    normalize: Literal["dataset", "cifar10_common", "imagenet", "none"] = "dataset"

    @model_validator(mode="after")
    def _schedule_needs(self) -> "Recipe":
        if self.schedule == "multistep" and (self.lr_ratio is None or len(self.lr_ratio) < 2):
            raise ValueError("schedule 'multistep' needs lr_ratio with at least 2 parts, e.g. [2, 1, 1]")
        if self.schedule == "step" and self.step_size is None:
            raise ValueError("schedule 'step' needs step_size (epochs between lr changes)")
        return self


RECIPE_KEYS = tuple(Recipe.model_fields)


@dataclass(frozen=True)
class ModelParams:
    name: str
    recipe: Recipe
    arch: Mapping[str, Any]  # validated keyword arguments for the model's builder

    def epochs(self, max_epochs: int | None) -> int:
        """The epochs this run trains: the recipe's count, capped by train.max_epochs."""
        return self.recipe.epochs if max_epochs is None else min(self.recipe.epochs, max_epochs)


# Names stages (train@<run>), files and the DVC param `runs.<run>`: no dot, which DVC reads as a
# nested key (`runs.lenet5-sgd_lr0.01` would be runs -> lenet5-sgd_lr0 -> 01, "missing").
RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


@dataclass(frozen=True)
class Run:
    """One training run of the run table (`runs.<name>` in params.yaml): a model's recipe with
    `overrides` replacing some of its values, trained once per seed."""

    name: str
    model: str
    overrides: Mapping[str, Any]  # recipe / architecture keys that differ from the model section
    params: ModelParams  # the model section with the overrides applied, validated


@dataclass(frozen=True)
class Params:
    seed: int
    seeds: tuple[int, ...]  # extra seeds, each repeating every run
    model: str  # the run the `experiment` stage shows (dvc exp run -S model=<run>)
    data: DataParams
    train: TrainParams
    runs: Mapping[str, Run]
    pca: tuple[str, ...]  # runs whose test features get a PCA figure (models with `embed`)
    # published run -> its open-choice alternatives, each (run, reading): see READINGS
    open_choices: Mapping[str, tuple[tuple[str, str], ...]]
    recipes: Mapping[str, ModelParams]  # the model sections, as written

    def __getitem__(self, run: str) -> Run:
        try:
            return self.runs[run]
        except KeyError:
            raise ParamsError(f"unknown run {run!r}; known runs (params.yaml `runs`, listed by "
                              f"`cifarlab runs`): {', '.join(self.runs)}") from None


TOP_KEYS = ("seed", "seeds", "model", "data", "train", "runs", "pca", "open_choices")
# How an open-choice alternative reads its run: the best epoch on test (as the reports did), the
# last epoch, or the best epoch with test-time horizontal flip averaged in (evaluate's best_flip).
READINGS = ("best", "final", "best_flip")


def _fmt_loc(prefix: str, loc: tuple) -> str:
    return ".".join([prefix, *(str(p) for p in loc)]) if prefix else ".".join(str(p) for p in loc)


def _params_error(err: ValidationError, prefix: str, allowed: tuple[str, ...]) -> ParamsError:
    """Turn pydantic's multi-line report into the first problem, on one line."""
    e = err.errors()[0]
    key = _fmt_loc(prefix, e["loc"])
    if e["type"] == "extra_forbidden":
        return ParamsError(f"unknown param '{key}'; allowed keys here: {', '.join(allowed)}")
    if e["type"] == "missing":
        return ParamsError(f"missing param '{key}': add it to params.yaml (docs/parameters.md)")
    msg = e["msg"].replace("\n", " ").removeprefix("Value error, ")
    if not e["loc"]:  # a model_validator: the whole section
        return ParamsError(f"{prefix}: {msg.removeprefix('Value error, ')}")
    return ParamsError(f"bad value for '{key}': {e['input']!r} ({msg})")


def _validate(cls: type[BaseModel], raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ParamsError(f"'{prefix}' must be a mapping of keys to values, got {raw!r}")
    try:
        return cls.model_validate(dict(raw))
    except ValidationError as err:
        raise _params_error(err, prefix, tuple(cls.model_fields)) from None


def _validate_model_section(name: str, raw: Any, check_models: bool = True) -> ModelParams:
    if not isinstance(raw, Mapping):
        raise ParamsError(f"'{name}' must be a mapping (the model's recipe), got {raw!r}")
    if not check_models:  # recipe keys checked; architecture options taken as written
        try:
            recipe = Recipe.model_validate({k: v for k, v in raw.items() if k in RECIPE_KEYS})
        except ValidationError as err:
            raise _params_error(err, name, RECIPE_KEYS) from None
        return ModelParams(name=name, recipe=recipe,
                           arch=MappingProxyType({k: v for k, v in raw.items() if k not in RECIPE_KEYS}))
    from cifarlab.models import model_info

    sig = model_info(name).arch_params
    allowed = (*RECIPE_KEYS, *sig)
    recipe_raw = {k: v for k, v in raw.items() if k in RECIPE_KEYS}
    for k in raw:
        if k not in allowed:
            raise ParamsError(f"unknown param '{name}.{k}'; allowed keys here: {', '.join(allowed)}")
    try:
        recipe = Recipe.model_validate(recipe_raw)
    except ValidationError as err:
        raise _params_error(err, name, allowed) from None
    arch = {}
    for k, p in sig.items():
        if k not in raw:
            continue
        try:
            # strict for bool so `skip: "no"` is refused rather than guessed at
            arch[k] = TypeAdapter(p.annotation).validate_python(raw[k], strict=p.annotation is bool)
        except ValidationError as err:
            msg = err.errors()[0]["msg"]
            raise ParamsError(f"bad value for '{name}.{k}': {raw[k]!r} ({msg})") from None
    return ModelParams(name=name, recipe=recipe, arch=MappingProxyType(arch))


def _check_model_name(key: str, value: Any, known: list[str]) -> str:
    if not isinstance(value, str) or value not in known:
        raise ParamsError(f"bad value for '{key}': {value!r} is not a model; known: {', '.join(known)}")
    return value


def validate(raw: Any, check_models: bool | Collection[str] = True) -> Params:
    """Validate a parsed params.yaml (a dict). Raises ParamsError with one line.

    check_models: whose architecture options (and `pca` embeddings) are checked against the
    model's builder, which imports that model's module (and torch): True every model (`cifarlab
    set`, CI), False none, or a collection of model names: a run's stages check their own model
    only, so they depend on no other model's file. Everything else is checked always.
    """
    def checks(model: str) -> bool:
        return check_models is True or (not isinstance(check_models, bool) and model in check_models)

    if not isinstance(raw, Mapping):
        raise ParamsError(f"params must be a mapping at top level, got {type(raw).__name__}")
    known = model_names()
    for k in raw:
        if k not in TOP_KEYS and k not in known:
            raise ParamsError(
                f"unknown param '{k}'; allowed top-level keys: {', '.join(TOP_KEYS)} "
                f"and one section per model ({', '.join(known)})"
            )
    for k in ("seed", "model", "runs"):
        if k not in raw:
            raise ParamsError(f"missing param '{k}': add it to params.yaml (docs/parameters.md)")
    seed = raw["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParamsError(f"bad value for 'seed': {seed!r} (a non-negative integer)")
    seeds = raw.get("seeds") or []
    if not isinstance(seeds, list) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ParamsError(f"bad value for 'seeds': {seeds!r} (a list of non-negative integers)")
    if len(set(seeds)) != len(seeds) or seed in seeds:
        raise ParamsError(f"bad value for 'seeds': {seeds!r} repeats a seed or lists `seed` ({seed}), "
                          "which the main runs already use")
    data = _validate(DataParams, raw.get("data", {}), "data")
    train = _validate(TrainParams, raw.get("train", {}), "train")
    recipes = {name: _validate_model_section(name, raw[name], checks(name)) for name in known if name in raw}
    runs = _validate_runs(raw["runs"], raw, known, checks)
    model = raw["model"]
    if not isinstance(model, str) or model not in runs:
        raise ParamsError(f"bad value for 'model': {model!r} is not a run; known runs: {', '.join(runs)}")
    pca = raw.get("pca") or []
    if not isinstance(pca, list):
        raise ParamsError(f"bad value for 'pca': {pca!r} (a list of run names)")
    for i, run in enumerate(pca):
        if not isinstance(run, str) or run not in runs:
            raise ParamsError(f"bad value for 'pca[{i}]': {run!r} is not a run; known runs: {', '.join(runs)}")
        if checks(runs[run].model) and not _has_embedding(runs[run].model):
            raise ParamsError(f"bad value for 'pca[{i}]': run {run!r} trains {runs[run].model}, which has no "
                              "feature embedding to project (alexnet_transfer has)")
    open_choices = _validate_open_choices(raw.get("open_choices") or {}, runs)
    return Params(
        seed=seed,
        seeds=tuple(seeds),
        model=model,
        data=data,
        train=train,
        runs=MappingProxyType(runs),
        pca=tuple(pca),
        open_choices=MappingProxyType(open_choices),
        recipes=MappingProxyType(recipes),
    )


def _validate_open_choices(raw: Any, runs: Mapping[str, Run]) -> dict[str, tuple[tuple[str, str], ...]]:
    """`open_choices: {run: [alternative, ...]}`, an alternative being `run` or `run:reading`.

    Names missing from the run table are left out, not refused: a cut-down table (a subset
    reproduction, a test) keeps working. tests/test_open_choices.py checks that every name in
    the project's params.yaml is a run."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"bad value for 'open_choices': {raw!r} (a mapping of run -> list of alternatives)")
    out = {}
    for base, alts in raw.items():
        if not isinstance(alts, list) or not alts:
            raise ParamsError(f"bad value for 'open_choices.{base}': {alts!r} (a list of runs, or run:reading)")
        parsed = []
        for i, alt in enumerate(alts):
            run, _, reading = str(alt).partition(":")
            reading = reading or "best"
            if reading not in READINGS:
                raise ParamsError(f"bad value for 'open_choices.{base}[{i}]': reading {reading!r}; one of "
                                  f"{', '.join(READINGS)} (e.g. {base}:final)")
            if base not in runs or run not in runs:
                continue  # not in this (cut-down) run table
            if runs[run].model != runs[base].model:
                raise ParamsError(f"bad value for 'open_choices.{base}[{i}]': {run!r} trains {runs[run].model}, "
                                  f"not {runs[base].model}: an alternative changes a setting, not the model")
            if (run, reading) == (base, "best") or (run, reading) in parsed:
                raise ParamsError(f"bad value for 'open_choices.{base}[{i}]': {alt!r} is listed twice "
                                  "(the run itself at its best epoch is the default)")
            parsed.append((run, reading))
        if parsed:
            out[base] = tuple(parsed)
    return out


def _has_embedding(model: str) -> bool:
    from cifarlab.models import model_info

    return model_info(model).embedding


def _validate_runs(raw_runs: Any, raw: Mapping, known: list[str], checks: Callable[[str], bool]) -> dict[str, Run]:
    """`runs:` -> name -> Run, each entry's model section merged with its overrides and validated
    as one section, so an override gets the same one-line errors a model section would."""
    if raw_runs is None or (isinstance(raw_runs, Mapping) and not raw_runs):  # `runs: {}`, or all commented out
        # a command that makes the file valid as it stands: `model` and `pca` must name runs of the table
        fix = "'runs={lenet5: {model: lenet5}}'" + (" model=lenet5" if raw.get("model") != "lenet5" else "") + (
            " 'pca=[]'" if raw.get("pca") else "")
        raise ParamsError(f"bad value for 'runs': {raw_runs!r} (the run table is empty, nothing to train): add a run "
                          f"(name: {{model: <model>, <key>: <value>, ...}}; docs/runs.md), e.g. cifarlab set {fix}")
    if not isinstance(raw_runs, Mapping):
        raise ParamsError("bad value for 'runs': expected a mapping of run name -> {model: <name>, <key>: <value>, ...}")
    runs = {}
    for name, entry in raw_runs.items():
        if not isinstance(name, str) or not re.fullmatch(RUN_NAME, name):
            raise ParamsError(f"bad run name {name!r} in 'runs': letters, digits, _ and - (it names stages "
                              "and files; no dot: DVC reads runs.<name> as a nested key)")
        if not isinstance(entry, Mapping) or "model" not in entry:
            raise ParamsError(f"bad value for 'runs.{name}': {entry!r} (a mapping with at least `model`)")
        model = _check_model_name(f"runs.{name}.model", entry["model"], known)
        if not isinstance(raw.get(model), Mapping):
            raise ParamsError(f"missing param section '{model}' (the recipe run '{name}' trains)")
        overrides = {k: v for k, v in entry.items() if k != "model"}
        try:
            merged = _validate_model_section(model, {**raw[model], **overrides}, checks(model))
        except ParamsError as e:  # name the run's entry, not the section, as the place to fix
            msg = str(e).replace(f"'{model}.", f"'runs.{name}.", 1)
            if msg.startswith(f"{model}: "):  # a rule spanning keys (multistep needs lr_ratio ...)
                msg = f"runs.{name} (model {model}): " + msg.removeprefix(f"{model}: ")
            raise ParamsError(msg) from None
        runs[name] = Run(name=name, model=model, overrides=MappingProxyType(overrides), params=merged)
    return runs


def load_params(path: str | Path = PARAMS_FILE, check_models: bool | Collection[str] = True) -> Params:
    """Read and validate params.yaml (see `read_params_file`, `validate`). Raises ParamsError with
    one line."""
    return validate(read_params_file(path), check_models)
