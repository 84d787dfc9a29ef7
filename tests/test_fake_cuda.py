"""The CUDA path rehearsed without a GPU. Every registered model, in the CUDA configuration (bf16
autocast on `cuda`, channels_last, params.yaml's eval batch size), runs what train and evaluate
do on a fake `cuda` device (torch's FakeTensorMode: tensors with a device, shape and dtype but no
data; no kernel runs): the prepared uint8 splits loaded onto it, augmentation and normalisation
there, forward, loss, the optimizer step, the test pass, AlexNet's feature cache, the metrics.
An op that meets a CPU tensor and a CUDA one raises FakeTensorDeviceMismatchError, as it would
fail on a GPU: a CPU tensor created in the GPU path (a `torch.arange` without `device=`) is caught
here, on a CPU, before a lent GPU's first step.

The functions are the project's own, those train and evaluate call (load_prepared, pipeline_for,
Runtime, build_model, TrainStep, predict, cached_inputs, classification_metrics), not copies.

What a fake device cannot do, and what stands in for it:
- backward: the autograd engine wants a CUDA context. `loss.backward()` walks the recorded graph
  instead and gives every leaf it reaches a zero gradient on the leaf's own device, so the
  optimizer step, gradient clipping and the schedule run on the fake tensors;
- fused SGD has no fake kernel in torch: its update checks its parameters and gradients are on
  the device (fused Adam's runs as it is);
- a CUDA generator needs a CUDA runtime: the random draws take a CPU generator (fake ops do not
  check a generator's device; fit makes its generators on the run's device);
- values: `.item()` of a fake tensor gives 1 and a branch on one (`if count > 0`) takes the true
  side; the metrics' bincount has a data-dependent size, so their rehearsal has a ShapeEnv;
- torch.compile (train.compile) is not rehearsed: the step runs eagerly.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from workspace import SHIPPED_PARAMS

from cifarlab.core import paths
from cifarlab.core.params import load_params
from cifarlab.core.runs import resolve
from cifarlab.data.cifar_io import channel_stats
from cifarlab.data.prepared import load_prepared, save_split
from cifarlab.engine import augment
from cifarlab.engine.augment import pipeline_for
from cifarlab.engine.device import Runtime
from cifarlab.engine.features import cacheable, cached_inputs
from cifarlab.engine.loop import _batches, _loss_acc, build_model, predict
from cifarlab.engine.metrics import classification_metrics
from cifarlab.engine.step import TrainStep
from cifarlab.models import list_models

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(SHIPPED_PARAMS)
CUDA = torch.device("cuda")
# What a run on a GPU computes in: params.yaml's train section with its GPU numerics on
CUDA_TRAIN = PARAMS.train.model_copy(update={"bf16": True, "channels_last": True, "compile": False})
# Tiny splits (a fake tensor costs the same whatever its size): one training step an epoch, one
# test batch (the eval batch size is params.yaml's, larger)
N_TRAIN, N_TEST = 8, 12
DATA_PATH_KEYS = ("augment", "crop_padding", "normalize")


def _data_path(run: str) -> tuple:
    recipe = PARAMS.runs[run].recipe.model_dump()
    return tuple(recipe.get(k) for k in DATA_PATH_KEYS)


def _first_runs(key) -> list[str]:
    """The first run of the run table for each value of key(run)."""
    out: dict = {}
    for name in PARAMS.runs:
        out.setdefault(key(name), name)
    return list(out.values())


# One run per registered model and AlexNet variant (skip changes its features); one per data path
# (augmentation, crop padding, normalisation) the run table holds
MODEL_RUNS = _first_runs(lambda r: (PARAMS.runs[r].model, PARAMS.runs[r].arch.get("skip")))
DATA_PATH_RUNS = _first_runs(_data_path)


def _fake_backward(loss: torch.Tensor, *args, **kwargs) -> None:
    stack, seen = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # an AccumulateGrad node: a parameter
        if leaf is not None:
            leaf.grad = torch.zeros_like(leaf)
        stack.extend(fn for fn, _ in node.next_functions)


def _checked_fused_sgd_step(original):
    def step(opt: torch.optim.SGD, closure=None):
        if not opt.defaults.get("fused"):
            return original(opt, closure)
        params = [p for group in opt.param_groups for p in group["params"]]
        _on_cuda(*params, *(p.grad for p in params if p.grad is not None))

    return step


def _for_fake(original, placeholder):
    from torch._subclasses.fake_tensor import FakeTensor

    def method(self: torch.Tensor):
        return placeholder if isinstance(self, FakeTensor) else original(self)

    return method


@contextmanager
def fake_cuda(monkeypatch, shape_env: bool = False):
    """A fake-tensor mode in which `cuda` tensors exist, autocast on `cuda` is on and the stand-ins
    of the module docstring are in place."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    mode = FakeTensorMode(
        allow_non_fake_inputs=True,  # load_prepared makes real CPU tensors (torch.from_numpy), then moves them
        static_shapes=True,
        shape_env=ShapeEnv(allow_scalar_outputs=True, allow_dynamic_output_shape_ops=True) if shape_env else None,
    )
    # Module.to() swaps a fake parameter with its converted copy, and torch.utils.swap_tensors
    # refuses a tensor something holds a weak reference to: the mode's memo holds one to every
    # fake tensor. A plain dict keeps them for the mode's life instead.
    mode.fake_tensor_converter.meta_converter.tensor_memo = {}
    # autocast(device_type="cuda") switches itself off where no CUDA runtime answers
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.Tensor, "backward", _fake_backward)
    if not torch._C._dispatch_has_kernel_for_dispatch_key("aten::_fused_sgd_", "Meta"):
        monkeypatch.setattr(torch.optim.SGD, "step", _checked_fused_sgd_step(torch.optim.SGD.step))
    monkeypatch.setattr(torch.Tensor, "item", _for_fake(torch.Tensor.item, 1))
    monkeypatch.setattr(torch.Tensor, "__bool__", _for_fake(torch.Tensor.__bool__, True))
    with mode:
        yield mode


def _fake_cuda_problem() -> str | None:
    """Why this torch cannot fake CUDA for the rehearsal; None when it can."""
    mp = pytest.MonkeyPatch()
    try:
        from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError

        with fake_cuda(mp):
            net = torch.nn.Conv2d(3, 4, 3).to(CUDA).to(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = net(torch.zeros(2, 3, 8, 8, device=CUDA).contiguous(memory_format=torch.channels_last))
            if (y.device.type, y.dtype) != ("cuda", torch.bfloat16):
                return f"torch {torch.__version__}: a fake CUDA forward in bf16 autocast gave {y.dtype} on {y.device}"
            try:
                y + torch.zeros(y.shape)
            except FakeTensorDeviceMismatchError:
                return None
            return f"torch {torch.__version__}: fake tensors let a CPU tensor meet a CUDA one"
    except Exception as err:  # noqa: BLE001 - whatever stops this torch faking CUDA is the reason
        return f"torch {torch.__version__} cannot fake CUDA ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def can_fake_cuda():
    problem = _fake_cuda_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    """A directory holding data/prepared/ as the preprocess stage writes it: tiny splits, an empty
    validation split (data.val_split 0, the default) and their stats."""
    root = tmp_path_factory.mktemp("fake_cuda")
    rng = np.random.default_rng(0)

    def split(n):
        return (
            rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            (np.arange(n) % len(paths.CLASSES)).astype(np.int64),
        )

    train = split(N_TRAIN)
    for f, s in ((paths.TRAIN_FILE, train), (paths.TEST_FILE, split(N_TEST)), (paths.VAL_FILE, split(0))):
        save_split(root / f, *s)
    mean, std = channel_stats(train[0])
    (root / paths.STATS_FILE).write_text(
        json.dumps(
            {
                "mean": [float(v) for v in mean],
                "std": [float(v) for v in std],
                "classes": list(paths.CLASSES),
                "n_train": N_TRAIN,
                "n_test": N_TEST,
                "n_val": 0,
            }
        )
    )
    return root


@pytest.fixture
def in_prepared(can_fake_cuda, prepared_dir, monkeypatch):
    monkeypatch.chdir(prepared_dir)


def _on_cuda(*tensors: torch.Tensor) -> None:
    for t in tensors:
        assert t.device.type == "cuda", f"{tuple(t.shape)} {t.dtype} on {t.device}"


def rehearse(run: str, monkeypatch) -> torch.Tensor:
    """train@<run> and evaluate@<run> as on a GPU: returns the test logits evaluate computes."""
    spec = resolve(PARAMS, run)
    recipe = spec.recipe
    arch = dict(spec.arch)
    if spec.model == "alexnet_transfer":  # no ImageNet weights here: random features, warned
        arch.update(pretrained=False, weights=None)
    with fake_cuda(monkeypatch):
        # train.run: the model first, on the CPU (fake here: no weights computed), then the data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(spec.model, arch, spec.seed)
        train_x, train_y, test_x, test_y, stats, val_x, val_y = load_prepared(CUDA, with_val=True)
        _on_cuda(train_x, train_y, test_x, test_y, val_x, val_y)
        rt = Runtime(CUDA, CUDA_TRAIN)
        pipe = image_pipe = pipeline_for(recipe, stats, CUDA)
        model = rt.prepare_model(model)
        _on_cuda(*model.parameters(), *model.buffers())
        test_images = test_x
        if cacheable(model, recipe):
            (train_x, test_x, val_x), pipe = cached_inputs(model, recipe, pipe, rt, train_x, test_x, val_x)
            _on_cuda(train_x, test_x, val_x)
            assert train_x.dtype == torch.bfloat16 and train_x.shape[0] == N_TRAIN
        # fit: one epoch of a shuffled split, then the test pass
        gen = torch.Generator().manual_seed(0)
        perm = torch.randperm(N_TRAIN, generator=gen, device=CUDA)
        batches = _batches(perm, recipe.batch_size)
        step = TrainStep(model, recipe, pipe, rt, epochs=2, steps_per_epoch=len(batches))
        for idx in batches:
            yb = train_y.index_select(0, idx)
            loss, logits = step(train_x.index_select(0, idx), yb, gen)
            _on_cuda(loss, logits, (logits.argmax(1) == yb).sum())
        _on_cuda(*(p.grad for p in step.trainable))
        step.end_epoch()
        _loss_acc(predict(model, test_x, pipe, rt), test_y)
        # evaluate: the whole model on the images (with test-time flip: both forwards)
        logits = predict(model, test_images, image_pipe, rt, flip=True)
        _on_cuda(logits)
        assert logits.shape == (N_TEST, 10) and logits.dtype == torch.float32
        return logits


@pytest.mark.parametrize("run", MODEL_RUNS)
def test_train_and_evaluate_mix_no_cpu_tensor_on_cuda(run, in_prepared, monkeypatch):
    rehearse(run, monkeypatch)


@pytest.mark.parametrize("run", DATA_PATH_RUNS)
def test_every_data_path_stays_on_cuda(run, in_prepared, monkeypatch):
    """Augmentation and normalisation of each data path the run table holds, train and test."""
    recipe = PARAMS.runs[run].recipe
    with fake_cuda(monkeypatch):
        train_x, _, test_x, _, stats = load_prepared(CUDA)
        rt = Runtime(CUDA, CUDA_TRAIN)
        pipe = pipeline_for(recipe, stats, CUDA)
        gen = torch.Generator().manual_seed(0)
        for x in (pipe(train_x, gen, train=True), pipe(test_x, None, train=False)):
            x = rt.prepare_input(x)
            _on_cuda(x)
            assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)


def test_metrics_of_cuda_logits_mix_no_cpu_tensor(in_prepared, monkeypatch):
    with fake_cuda(monkeypatch, shape_env=True):
        model = build_model("lenet5", {}, 0)
        _, _, test_x, test_y, stats = load_prepared(CUDA)
        rt = Runtime(CUDA, CUDA_TRAIN)
        logits = predict(rt.prepare_model(model), test_x, pipeline_for(PARAMS["lenet5"].recipe, stats, CUDA), rt)
        m = classification_metrics(logits, test_y, tuple(stats["classes"]))
    assert m["n"] == N_TEST and list(m["per_class_top1"]) == list(paths.CLASSES)


def test_every_model_and_data_path_is_rehearsed():
    assert {PARAMS.runs[r].model for r in MODEL_RUNS} == set(list_models())
    assert {_data_path(r) for r in DATA_PATH_RUNS} == {_data_path(r) for r in PARAMS.runs}
    assert {"crop_flip", "crop_flip_blur_color"} <= {_data_path(r)[0] for r in DATA_PATH_RUNS}


class _TorchWithoutDevice:
    """torch as augment.py sees it, except that the tensors it makes land on the CPU whatever
    `device=` says: a CPU tensor planted in the augmentation path."""

    def __getattr__(self, name):
        attr = getattr(torch, name)
        if name not in ("arange", "rand", "randint", "tensor", "zeros", "ones", "full"):
            return attr

        def on_cpu(*args, **kwargs):
            kwargs.pop("device", None)
            return attr(*args, **kwargs)

        return on_cpu


@pytest.mark.parametrize("mode", ["crop_flip", "crop_flip_blur_color"])
def test_a_cpu_tensor_planted_in_augmentation_is_caught(mode, in_prepared, monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError

    run = next(r for r in PARAMS.runs if _data_path(r)[0] == mode)
    monkeypatch.setattr(augment, "torch", _TorchWithoutDevice())
    with pytest.raises(FakeTensorDeviceMismatchError, match="cuda:0 and cpu"):
        rehearse(run, monkeypatch)
