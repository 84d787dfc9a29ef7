"""params.yaml -> frozen, validated config.

Every stage calls `load_params()` before doing any work, so a typo costs a one-line error
(exit code 2), not an hour of training. `Params` is the schema of the whole file, and each
field's `description` is its row of docs/parameters.md (generated: cifarlab.tooling.params_doc).
Validation is strict:

- a file that is not UTF-8 or not YAML, writes a key twice, or whose top level is no mapping is
  refused with its line and column (core.params_file), whichever loader reads it;
- an unknown key anywhere is refused and the allowed keys are named;
- values are type-checked (`lr: fast` is refused) and range-checked (epochs >= 1, ...);
- every run of `runs` trains a registered model, whose section the file has;
- each model section is a training *recipe* (the `Recipe` fields, shared by all models) plus
  that model's architecture options, the keyword arguments of its registered builder, checked
  by the registry against the builder's signature (`cifarlab.models.check_options`);
- the rules over several keys (`model` and `pca` name runs, extra seeds repeat none, ...) are
  validators of `Params`.

A validated run is a `Run`: its name, model, overrides, recipe and architecture, at one seed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

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
        raise ValueError(
            "read as a number, not text: quote the 32 hex digits, e.g. "
            "cifarlab set 'data.md5=\"0123...\"' or dvc exp run -S 'data.md5=\"0123...\"'"
        )
    return v


class DataParams(_Strict):
    url: str = Field(
        OFFICIAL_URL,
        description=(
            "where the CIFAR-10 archive comes from: a URL, a local path or a `file://` URL "
            "([a local copy](data.md#running-on-a-local-copy-of-cifar-10))"
        ),
    )
    md5: Annotated[str, BeforeValidator(_md5_is_text), Field(pattern=r"^[0-9a-f]{32}$")] = Field(
        OFFICIAL_MD5,
        description="the archive's md5 (32 lowercase hex digits), checked before it is used; "
        "quoted when it is all digits, which YAML would read as a number",
    )
    train_subset: Annotated[int, Field(ge=10)] | None = Field(
        None,
        description=(
            "null = every training image; else a total count, stratified by class and drawn with `seed` "
            "([CPU subset reproduction](data.md#cpu-subset-reproduction))"
        ),
    )
    test_subset: Annotated[int, Field(ge=10)] | None = Field(
        None, description=("null = every test image; else a total count, stratified by class and drawn with `seed`")
    )
    val_split: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0,
        description=(
            "share of train held out (stratified, seeded); > 0 makes early stopping watch it and adds a `val` "
            "block to each metrics file: test metrics at the validation-selected epoch, the honest number beside "
            "best-on-test. 0 = none, as in the reports (which picked their epoch on test)"
        ),
    )


class TrainParams(_Strict):
    max_epochs: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description=(
            "null = each recipe's `epochs`; else a cap on every recipe (smoke runs), whose schedule is laid out "
            "over the capped epochs (multistep and onecycle compressed into it)"
        ),
    )
    # bf16, channels_last and fused_optimizer: a run's numerics, the same on every device
    # (benchmarks/bench_cpu.py measures them)
    bf16: bool = Field(
        True,
        description=(
            "bf16 autocast: convolutions and matmuls in bf16, weights and optimizer state in fp32. Part of a run's "
            "numerics, the same on every device, so stages depend on it ([CPU speed](training.md#cpu-speed): "
            "which CPUs gain)"
        ),
    )
    channels_last: bool = Field(
        True,
        description=(
            "NHWC tensors, the layout oneDNN's and cuDNN's bf16 kernels want; part of the numerics, as `bf16`"
        ),
    )
    fused_optimizer: bool = Field(
        True,
        description=(
            "torch's fused Adam/SGD kernels where the optimizer has them: one kernel updates every parameter, the "
            "same update as the default path rounded differently ([fused optimizers](training.md#fused-optimizers)); "
            "part of the numerics, as `bf16`"
        ),
    )
    eval_batch_size: Annotated[int, Field(ge=1)] = Field(
        500,
        description=(
            "batch size of test passes, and of the pass that computes AlexNet's frozen features once "
            "([How training runs](training.md#alexnets-frozen-features-computed-once))"
        ),
    )
    num_threads: Annotated[int, Field(ge=1)] | None = Field(
        2,
        description=(
            "CPU threads for torch; fixed rather than the machine's core count because it is part of the numbers "
            "(float sums split over threads round differently: "
            "[why](reproducibility.md#same-params-and-data-the-same-bytes)); "
            "null = all cores: then two machines give different bytes"
        ),
    )
    deterministic: bool = Field(
        True,
        description=(
            "CUDA only: deterministic kernels (`torch.use_deterministic_algorithms`, "
            "`CUBLAS_WORKSPACE_CONFIG=:4096:8`, cuDNN autotuning off). CPU runs are bit-reproducible either way "
            "([on CUDA](reproducibility.md#on-cuda))"
        ),
    )
    compile: bool = Field(
        False,
        description=(
            "`torch.compile` the training step (forward, loss, backward), on every device alike: on a CPU no faster "
            "than bf16 eager ([CPU speed](training.md#cpu-speed)); `true` is the GPU's fast path "
            "([compiled step](training.md#on-a-gpu)), which `tools/gpu_reproduce.py` sets. Stages depend on it: "
            "compiled kernels round differently in the last bits, so it is a param, never resolved per machine"
        ),
    )
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "reduce-overhead",
        description=(
            "the `torch.compile` mode with `compile`: `reduce-overhead` replays the step as CUDA graphs (one "
            "launch per graph; on a CPU the same as `default`)"
        ),
    )
    checkpoint_minutes: Annotated[float, Field(ge=0)] = Field(
        10.0,
        description=(
            "how often the resume state `data/resume/<run>.pt` is rewritten: after the first epoch that ends this "
            "many minutes after the last write (0 = every epoch). A kill loses at most that much training plus the "
            "epoch in progress ([crash and resume](reproducibility.md#crash-and-resume)). Not hashed by DVC: the "
            "cadence decides when a state is written, not what it holds, and a resumed run gives the same bytes"
        ),
    )


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
    """How one model is trained: the keys every model section has, besides its architecture options."""

    optimizer: Literal["sgd", "adam"] = Field(description="the optimizer")
    lr: Annotated[float, Field(gt=0)] = Field(description="learning rate; with `onecycle`, the peak")
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description="SGD momentum (sgd only)")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="L2 weight decay, the optimizer's own")
    batch_size: Annotated[int, Field(ge=1)] = Field(description="training batch size, in images")
    epochs: Annotated[int, Field(ge=1)] = Field(description="epochs to train, before any `train.max_epochs` cap")
    schedule: Literal["constant", "multistep", "step", "onecycle"] = Field(
        "constant",
        description=(
            "the lr schedule: `constant`; `multistep` (lr x `gamma` at each boundary of `lr_ratio`); `step` "
            "(lr x `gamma` every `step_size` epochs); `onecycle` (per batch, peak `lr`)"
        ),
    )
    lr_ratio: Ratio | None = Field(
        None,
        description=(
            'multistep: the share of the epochs spent at each lr, e.g. `[2, 1, 1]`, `"2:1:1"` or `2_1_1` (the form '
            "run names use); at least 2 parts"
        ),
    )
    gamma: Annotated[float, Field(gt=0, le=1)] = Field(
        0.1, description="the lr factor at each multistep boundary or step"
    )
    step_size: Annotated[int, Field(ge=1)] | None = Field(None, description="step: epochs between lr changes")
    early_stopping_patience: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description=(
            "stop after this many epochs without a lower test loss (validation loss with `data.val_split`); "
            "null = every epoch is trained"
        ),
    )
    grad_clip: Annotated[float, Field(gt=0)] | None = Field(
        None, description=("clip every gradient element to +-value; null = no clipping")
    )
    augment: Literal["none", "crop_flip", "crop_flip_blur_color"] = Field(
        "none",
        description=(
            "training augmentation: `crop_flip` is a random crop from the image padded by 4 pixels and a horizontal "
            "flip; `crop_flip_blur_color` adds blur and colour jitter"
        ),
    )
    crop_padding: Literal["zeros", "reflect"] = Field(
        "zeros",
        description=(
            "the 4-pixel border a random crop may reach past the edge: `zeros`, or `reflect` (the image mirrored)"
        ),
    )
    normalize: Literal["dataset", "cifar10_common", "imagenet", "none"] = Field(
        "dataset",
        description=(
            "input normalization: `dataset` (the training split's mean/std), `cifar10_common` (the constants public "
            "recipes hard-code: mean 0.4914/0.4822/0.4465, std 0.2023/0.1994/0.2010), `imagenet`, `none` (scale "
            "to [0, 1])"
        ),
    )

    @model_validator(mode="after")
    def _schedule_needs(self) -> Recipe:
        if self.schedule == "multistep" and (self.lr_ratio is None or len(self.lr_ratio) < 2):
            raise ValueError("schedule 'multistep' needs lr_ratio with at least 2 parts, e.g. [2, 1, 1]")
        if self.schedule == "step" and self.step_size is None:
            raise ValueError("schedule 'step' needs step_size (epochs between lr changes)")
        return self


RECIPE_KEYS = tuple(Recipe.model_fields)
MODELS = tuple(model_names())  # one section of params.yaml each (no torch needed to list them)
Reading = Literal["best", "final", "best_flip"]
# How an open-choice alternative reads its run: the best epoch on test (as the reports did), the
# last epoch, or the best epoch with test-time horizontal flip averaged in (evaluate's best_flip).
READINGS: tuple[str, ...] = get_args(Reading)
# Names stages (train@<run>), files and the DVC param `runs.<run>`: no dot, which DVC reads as a
# nested key (`runs.lenet5-sgd_lr0.01` would be runs -> lenet5-sgd_lr0 -> 01, "missing").
RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


@dataclass(frozen=True)
class Run:
    """One training run at one seed: a model's section (recipe and architecture) with the run's
    `overrides` applied, validated. `Params.runs` holds each run of the table at params.yaml's
    `seed`; `cifarlab.core.runs.resolve` gives it at another. A model section as written
    (`Params.recipes`) is the run of that model without overrides, named after the model."""

    name: str  # a key of `runs`: it names the run's stages, files and report rows
    model: str  # the registered model it trains
    overrides: Mapping[str, Any]  # the run's entry in `runs` but `model`, as written
    recipe: Recipe
    arch: Mapping[str, Any]  # validated keyword arguments of the model's builder (the keys written only)
    seed: int  # weight init, shuffling, augmentation, dropout
    out: str  # output id: `name`, plus -s<seed> for a seed other than params.yaml's (core.runs.output_id)

    def epochs(self, max_epochs: int | None) -> int:
        """The epochs this run trains: the recipe's count, capped by train.max_epochs."""
        return self.recipe.epochs if max_epochs is None else min(self.recipe.epochs, max_epochs)


# ---------------------------------------------------------------------------- validation helpers


def _fail(message: str) -> PydanticCustomError:
    """A validator's error whose message is the whole one-line error (`validate` passes it on)."""
    return PydanticCustomError("params", "{message}", {"message": message})


def _hint(allowed: str, form: Literal["hint", "reference"] = "hint", items: bool = True) -> WrapValidator:
    """Report a value the wrapped type refuses as `bad value for '<key>': <the value> (<allowed>)`
    (form "reference": `... <the value> <allowed>`, e.g. "is not a run; known runs: ..."), the value
    whole, a list rather than its bad element; items=False leaves its elements' errors as they are."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError as err:
            if not items and any(e["loc"] for e in err.errors()):
                raise
            raise PydanticCustomError(form, "{allowed}", {"allowed": allowed}) from None

    return WrapValidator(check)


def _checks(info: ValidationInfo, model: str) -> bool:
    """Whether `model`'s architecture options are checked against its builder (validate's check_models)."""
    check_models = (info.context or {}).get("check_models", True)
    return check_models is True or (not isinstance(check_models, bool) and model in check_models)


def _none_is_empty(value: Any) -> Any:
    return value or ()  # null (or a key left empty): none


def _section_keys(model: str, check: bool) -> tuple[str, ...]:
    if not check:
        return RECIPE_KEYS
    from cifarlab.models import model_info

    return (*RECIPE_KEYS, *model_info(model).arch_params)


def _validate_model_section(name: str, raw: Any, check_models: bool = True) -> tuple[Recipe, Mapping[str, Any]]:
    """A model section (or a run's section with its overrides applied) -> its recipe and
    architecture options. check_models=False: the options are taken as written."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"'{name}' must be a mapping (the model's recipe), got {raw!r}")
    allowed = _section_keys(name, check_models)
    if check_models:
        for k in raw:
            if k not in allowed:
                raise ParamsError(f"unknown param '{name}.{k}'; allowed keys here: {', '.join(allowed)}")
    try:
        recipe = Recipe.model_validate({k: v for k, v in raw.items() if k in RECIPE_KEYS})
    except ValidationError as err:
        raise _params_error(err, name, allowed) from None
    arch = {k: v for k, v in raw.items() if k not in RECIPE_KEYS}
    if check_models:
        from cifarlab.models import check_options

        arch = check_options(name, arch)
    return recipe, MappingProxyType(arch)


def _model_section(name: str):
    """The validator of model `name`'s section: the run of that model without overrides."""

    def validate_section(raw: Any, info: ValidationInfo) -> Run:
        try:
            recipe, arch = _validate_model_section(name, raw, _checks(info, name))
        except ParamsError as e:
            raise _fail(str(e)) from None
        # `seed` is validated before the sections; when it is bad its error is the one reported
        return Run(
            name=name,
            model=name,
            overrides=MappingProxyType({}),
            recipe=recipe,
            arch=arch,
            seed=info.data.get("seed", 0),
            out=name,
        )

    return validate_section


ModelName = Annotated[Literal[MODELS], _hint(f"is not a model; known: {', '.join(MODELS)}", "reference")]


class RunEntry(BaseModel):
    """An entry of the run table as written: `model`, and the keys of that model's section the run
    sets to other values (its overrides)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    model: ModelName = Field(
        description=(
            "the registered model the run trains; its section of params.yaml is the recipe the run starts from"
        )
    )


_RUN_TABLE = TypeAdapter(dict[Annotated[str, Field(pattern=RUN_NAME)], RunEntry])


def _run_table_error(err: ValidationError, raw: Any, info: ValidationInfo) -> str:
    """The first structural problem of the run table (a name, an entry's shape, its model), one line."""
    e = err.errors()[0]
    loc = e["loc"]
    if not loc:
        return "bad value for 'runs': expected a mapping of run name -> {model: <name>, <key>: <value>, ...}"
    name = loc[0]
    if loc[1:] == ("[key]",):  # the name as written: the error's location spells True as 1
        return (
            f"bad run name {e['input']!r} in 'runs': letters, digits, _ and - (it names stages and files; "
            "no dot: DVC reads runs.<name> as a nested key)"
        )
    if loc[1:] == ("model",) and e["type"] == "reference":
        return f"bad value for 'runs.{name}.model': {e['input']!r} {e['msg']}"
    if len(loc) == 2 and e["type"] == "invalid_key":  # an override named by a number
        model = raw[name].get("model")
        allowed = _section_keys(model, _checks(info, model)) if model in MODELS else RECIPE_KEYS
        return f"unknown param 'runs.{name}.{loc[1]}'; allowed keys here: {', '.join(allowed)}"
    return f"bad value for 'runs.{name}': {raw[name]!r} (a mapping with at least `model`)"


def _run_table(raw: Any, info: ValidationInfo) -> Mapping[str, Run]:
    """`runs:` -> name -> Run, each entry's model section merged with its overrides and validated
    as one section, so an override gets the same one-line errors a model section would."""
    try:
        table = _RUN_TABLE.validate_python(raw)
    except ValidationError as err:
        raise _fail(_run_table_error(err, raw, info)) from None
    runs = {}
    for name, entry in table.items():
        model, overrides = entry.model, dict(entry.model_extra or {})
        section = info.data.get(model)  # None: no section, or one whose error is reported before
        if section is None:
            raise _fail(f"missing param section '{model}' (the recipe run '{name}' trains)")
        written = {**section.recipe.model_dump(exclude_unset=True), **section.arch}
        try:
            recipe, arch = _validate_model_section(model, {**written, **overrides}, _checks(info, model))
        except ParamsError as e:  # name the run's entry, not the section, as the place to fix
            msg = str(e).replace(f"'{model}.", f"'runs.{name}.", 1)
            if msg.startswith(f"{model}: "):  # a rule spanning keys (multistep needs lr_ratio ...)
                msg = f"runs.{name} (model {model}): " + msg.removeprefix(f"{model}: ")
            raise _fail(msg) from None
        # the main seed's output id is the run's name (core.runs.output_id)
        runs[name] = Run(
            name=name,
            model=model,
            overrides=MappingProxyType(overrides),
            recipe=recipe,
            arch=arch,
            seed=info.data.get("seed", 0),
            out=name,
        )
    return MappingProxyType(runs)


def _names_a_run(value: Any, handler: Any, info: ValidationInfo) -> Any:
    runs = info.data.get("runs")  # validated before `model`, `pca` and `open_choices`; None if bad
    if runs is not None and (not isinstance(value, str) or value not in runs):
        raise PydanticCustomError("reference", "{allowed}", {"allowed": f"is not a run; known runs: {', '.join(runs)}"})
    return handler(value)


RunRef = Annotated[str, WrapValidator(_names_a_run), Field(title="run name")]  # the name of a run of the table


def _open_choices(raw: Any, info: ValidationInfo) -> Mapping[str, tuple[tuple[str, str], ...]]:
    """`open_choices: {run: [alternative, ...]}`, an alternative being `run` or `run:reading`.

    Names missing from the run table are left out, not refused: a cut-down table (a subset
    reproduction, a test) keeps working. tests/test_open_choices.py checks that every name in
    the project's params.yaml is a run."""
    raw = raw or {}
    runs = info.data.get("runs") or {}
    if not isinstance(raw, Mapping):
        raise _fail(f"bad value for 'open_choices': {raw!r} (a mapping of run -> list of alternatives)")
    out = {}
    for base, alts in raw.items():
        if not isinstance(alts, list) or not alts:
            raise _fail(f"bad value for 'open_choices.{base}': {alts!r} (a list of runs, or run:reading)")
        parsed: list[tuple[str, str]] = []
        for i, alt in enumerate(alts):
            run, _, reading = str(alt).partition(":")
            reading = reading or "best"
            if reading not in READINGS:
                raise _fail(
                    f"bad value for 'open_choices.{base}[{i}]': reading {reading!r}; one of "
                    f"{', '.join(READINGS)} (e.g. {base}:final)"
                )
            if base not in runs or run not in runs:
                continue  # not in this (cut-down) run table
            if runs[run].model != runs[base].model:
                raise _fail(
                    f"bad value for 'open_choices.{base}[{i}]': {run!r} trains {runs[run].model}, "
                    f"not {runs[base].model}: an alternative changes a setting, not the model"
                )
            if (run, reading) == (base, "best") or (run, reading) in parsed:
                raise _fail(
                    f"bad value for 'open_choices.{base}[{i}]': {alt!r} is listed twice "
                    "(the run itself at its best epoch is the default)"
                )
            parsed.append((run, reading))
        if parsed:
            out[base] = tuple(parsed)
    return MappingProxyType(out)


def _has_embedding(model: str) -> bool:
    from cifarlab.models import model_info

    return model_info(model).embedding


# ---------------------------------------------------------------------------- the schema


class _Settings(_Strict):
    """The top-level keys the model sections and the run table are validated after (in this order)."""

    seed: Annotated[int, Field(strict=True, ge=0), _hint("a non-negative integer")] = Field(
        description=(
            "seeds weight init, subsets, the validation split, shuffling, augmentation and dropout of every run"
        )
    )
    seeds: Annotated[
        tuple[Annotated[int, Field(strict=True, ge=0)], ...],
        BeforeValidator(_none_is_empty),
        _hint("a list of non-negative integers"),
    ] = Field(
        (),
        description=(
            "extra seeds, none repeated nor `seed`: every run is trained once more per seed "
            "(`train_seeds@<run>-<seed>` and its evaluate/plot; files `<run>-s<seed>`); the report shows mean +- "
            "std, n, and whether the published value lies within the seeds' range. Example: "
            "`dvc exp run -S 'seeds=[1,2]'`. These stages depend on every model section (DVC cannot look a run's "
            "model up inside a matrix), so with seeds set, editing a recipe re-runs all of them"
        ),
    )
    data: DataParams = Field(DataParams(), description="the archive and its splits (the `data.*` keys)")
    train: TrainParams = Field(TrainParams(), description="how every run trains, whatever the run (the `train.*` keys)")


_Sections = create_model(
    "_Sections",
    __base__=_Settings,
    __module__=__name__,
    **{
        name: (
            Annotated[Run | None, PlainValidator(_model_section(name))],
            Field(
                None,
                description=(
                    f"the section of model `{name}`: its training recipe (the `<model>.*` keys below) "
                    "and its architecture options (its builder's arguments); the runs of that model start from it. "
                    "Needed only when a run trains the model"
                ),
            ),
        )
        for name in MODELS
    },
)


class Params(_Sections):
    """params.yaml, validated: the schema of every key (each field's `description` is its row of
    docs/parameters.md). A model section is the field named after the model; `recipes` lists them."""

    runs: Annotated[Mapping[str, Run], PlainValidator(_run_table)] = Field(
        description=(
            "the run table: run name (letters, digits, `_`, `-`; it names stages, files and report rows) -> "
            "`{model: <model>, <key>: <value>, ...}`, the model's section with the recipe or architecture keys "
            'listed replaced (`{model: resnet18, activation: tanh, lr_ratio: "5:3:2", augment: none}`); '
            "each run's stages track only their own entry and their model's section ([runs](runs.md))"
        )
    )
    model: RunRef = Field(
        description=(
            "the run the `experiment` stage copies to `reports/metrics/experiment.json`, so `dvc exp show` and "
            "`dvc metrics diff` compare experiments on one file whatever the run (`dvc exp run -S model=<run>`; "
            "[DVC experiments](experiments.md))"
        )
    )
    pca: Annotated[tuple[RunRef, ...], BeforeValidator(_none_is_empty), _hint("a list of run names", items=False)] = (
        Field(
            (),
            description=(
                "runs whose test features get a PCA figure (`pca@<run>`), runs of a model with a feature embedding "
                "(AlexNet)"
            ),
        )
    )
    open_choices: Annotated[Mapping[str, tuple[tuple[str, Reading], ...]], PlainValidator(_open_choices)] = Field(
        default_factory=lambda: MappingProxyType({}),
        description=(
            "per published run, its alternatives: runs of the table that change one setting the report left "
            "OPEN (`lenet5-tanh`, `lenet5-sgd_lr1e-2`, ...) or another reading of a run (`run:final`, the last "
            'epoch; `run:best_flip`, best epoch with test-time flip). The report\'s "Open choices" section says '
            "which reproduces the published number "
            "([choices the reports left open](runs.md#choices-the-reports-left-open))"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _run_table_not_empty(cls, raw: Any) -> Any:
        raw_runs = raw.get("runs", ...) if isinstance(raw, Mapping) else ...
        if raw_runs is None or (isinstance(raw_runs, Mapping) and not raw_runs):  # `runs: {}`, or all commented out
            # a command that makes the file valid as it stands: `model` and `pca` must name runs of the table
            fix = (
                "'runs={lenet5: {model: lenet5}}'"
                + (" model=lenet5" if raw.get("model") != "lenet5" else "")
                + (" 'pca=[]'" if raw.get("pca") else "")
            )
            raise _fail(
                f"bad value for 'runs': {raw_runs!r} (the run table is empty, nothing to train): add a run "
                f"(name: {{model: <model>, <key>: <value>, ...}}; docs/runs.md), e.g. cifarlab set {fix}"
            )
        return raw

    @model_validator(mode="after")
    def _rules_over_keys(self, info: ValidationInfo) -> Params:
        if len(set(self.seeds)) != len(self.seeds) or self.seed in self.seeds:
            raise _fail(
                f"bad value for 'seeds': {list(self.seeds)!r} repeats a seed or lists `seed` ({self.seed}), "
                "which the main runs already use"
            )
        for i, run in enumerate(self.pca):
            model = self.runs[run].model
            if _checks(info, model) and not _has_embedding(model):
                raise _fail(
                    f"bad value for 'pca[{i}]': run {run!r} trains {model}, which has no feature "
                    "embedding to project (alexnet_transfer has)"
                )
        return self

    @property
    def recipes(self) -> Mapping[str, Run]:
        """The model sections the file has, by model, each as the run of that model without overrides."""
        return MappingProxyType({m: getattr(self, m) for m in MODELS if getattr(self, m) is not None})

    def __getitem__(self, run: str) -> Run:
        try:
            return self.runs[run]
        except KeyError:
            raise ParamsError(
                f"unknown run {run!r}; known runs (params.yaml `runs`, listed by "
                f"`cifarlab runs`): {', '.join(self.runs)}"
            ) from None


TOP_KEYS = ("seed", "seeds", "model", "data", "train", "runs", "pca", "open_choices")  # as error lines list them


# ---------------------------------------------------------------------------- one-line errors


def _fmt_loc(prefix: str, loc: tuple) -> str:
    return ".".join([prefix, *(str(p) for p in loc)]) if prefix else ".".join(str(p) for p in loc)


def _params_error(err: ValidationError, prefix: str, allowed: tuple[str, ...]) -> ParamsError:
    """Turn pydantic's multi-line report on a section's keys into the first problem, on one line."""
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


def _first_error(err: ValidationError) -> ParamsError:
    """The first problem of a `Params` validation, on one line: an unknown top-level key, then a
    missing one, then the others in the order of the fields."""

    def rank(e: dict) -> int:
        top = len(e["loc"]) == 1
        return (
            0 if top and e["type"] in ("extra_forbidden", "invalid_key") else 1 if top and e["type"] == "missing" else 2
        )

    e = min(err.errors(), key=rank)
    loc, kind = e["loc"], e["type"]
    if kind == "params":
        return ParamsError(e["ctx"]["message"])
    if not loc:
        return ParamsError(f"params must be a mapping at top level, got {type(e['input']).__name__}")
    if rank(e) == 0:
        return ParamsError(
            f"unknown param '{loc[0]}'; allowed top-level keys: {', '.join(TOP_KEYS)} "
            f"and one section per model ({', '.join(MODELS)})"
        )
    if kind == "extra_forbidden":
        section = Params.model_fields[loc[0]].annotation  # data, train: the keys they allow
        return ParamsError(f"unknown param '{_fmt_loc('', loc)}'; allowed keys here: {', '.join(section.model_fields)}")
    if kind == "model_type" and len(loc) == 1:
        return ParamsError(f"'{loc[0]}' must be a mapping of keys to values, got {e['input']!r}")
    key = f"{loc[0]}[{loc[1]}]" if loc[0] in ("seeds", "pca") and len(loc) == 2 else _fmt_loc("", loc)  # pca[0]
    if kind == "missing":
        return ParamsError(f"missing param '{key}': add it to params.yaml (docs/parameters.md)")
    if kind == "reference":
        return ParamsError(f"bad value for '{key}': {e['input']!r} {e['msg']}")
    msg = e["msg"].replace("\n", " ").removeprefix("Value error, ")
    return ParamsError(f"bad value for '{key}': {e['input']!r} ({msg})")


def validate(raw: Any, check_models: bool | Collection[str] = True) -> Params:
    """Validate a parsed params.yaml (a dict). Raises ParamsError with one line.

    check_models: whose architecture options (and `pca` embeddings) are checked against the
    model's builder, which imports that model's module (and torch): True every model (`cifarlab
    set`, CI), False none, or a collection of model names: a run's stages check their own model
    only, so they depend on no other model's file. Everything else is checked always.
    """
    try:
        return Params.model_validate(raw, context={"check_models": check_models})
    except ValidationError as err:
        raise _first_error(err) from None


def load_params(path: str | Path = PARAMS_FILE, check_models: bool | Collection[str] = True) -> Params:
    """Read and validate params.yaml (see `read_params_file`, `validate`). Raises ParamsError with
    one line."""
    return validate(read_params_file(path), check_models)
