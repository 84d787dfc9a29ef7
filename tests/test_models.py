"""Tests of the model registry and the nine architectures (timm style: parametrized over
list_models()). CPU only, batch 2, no training loops, never the network."""

from __future__ import annotations

import dataclasses
import inspect
import typing
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from helpers_bad_inputs import BAD_OPTION_VALUES
from torch import nn
from workspace import SHIPPED_PARAMS

from cifarlab.core.errors import CifarlabError, ParamsError, WeightsError
from cifarlab.models import ModelInfo, get_model, list_models, model_info
from cifarlab.models import alexnet_transfer as alexnet_mod
from cifarlab.models.alexnet_transfer import RandomFeaturesWarning

NAMES = [
    "alexnet_transfer",
    "cnn",
    "custom_resnet",
    "dnn",
    "hw2_cnn",
    "lenet5",
    "resnet",
    "resnet18",
    "resnet9",
]

REPO = Path(__file__).resolve().parents[1]
# The published numbers live only in reports/reference.yaml (keyed by run), the run -> model map
# in params.yaml's run table: the registry carries neither.
REFERENCE = yaml.safe_load((REPO / "reports" / "reference.yaml").read_text())["numbers"]
RUN_MODEL = {name: entry["model"] for name, entry in yaml.safe_load((SHIPPED_PARAMS).read_text())["runs"].items()}


def primary(metric: str = "top1") -> dict[str, dict]:
    """run -> reference.yaml's primary `metric` entry of it: the only one, or else the one without
    a note (reference.yaml's rule for several entries of one (run, metric))."""
    out: dict[str, dict] = {}
    for run in {n["run"] for n in REFERENCE}:
        entries = [n for n in REFERENCE if n["run"] == run and n["metric"] == metric]
        if entries:
            (out[run],) = entries if len(entries) == 1 else [n for n in entries if not n.get("note")]
    return out


def build(name: str, **arch) -> nn.Module:
    """get_model, with alexnet_transfer on random features (its warning expected and checked)."""
    if name == "alexnet_transfer":
        arch.setdefault("pretrained", False)
        if not arch["pretrained"] and arch.get("weights") is None:
            with pytest.warns(RandomFeaturesWarning):
                return get_model(name, **arch)
    return get_model(name, **arch)


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---- layer arithmetic, independent of the implementation --------------------------------


def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c  # weight + bias (running stats are buffers, not parameters)


def linear(i: int, o: int) -> int:
    return i * o + o


def basic_block(cin: int, cout: int, stride: int) -> int:
    n = conv(cin, cout, 3, False) + bn(cout) + conv(cout, cout, 3, False) + bn(cout)
    if stride != 1 or cin != cout:
        n += conv(cin, cout, 1, False) + bn(cout)
    return n


def cifar_resnet(blocks: list[int], widths: list[int]) -> int:
    n = conv(3, widths[0], 3, False) + bn(widths[0])
    cin = widths[0]
    for i, (b, w) in enumerate(zip(blocks, widths, strict=True)):
        for j in range(b):
            n += basic_block(cin, w, 2 if (i > 0 and j == 0) else 1)
            cin = w
    return n + linear(cin, 10)


def bottleneck(cin: int, cout: int, stride: int, expansion: int) -> int:
    w = cout // expansion
    n = conv(cin, w, 1, False) + bn(w) + conv(w, w, 3, False) + bn(w) + conv(w, cout, 1, False) + bn(cout)
    if stride != 1 or cin != cout:
        n += conv(cin, cout, 1, False) + bn(cout)
    return n


def custom_resnet_count(expansion: int = 4) -> int:
    n = conv(3, 64, 7, False) + bn(64)
    cin = 64
    for i, (b, w) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)]):
        for j in range(b):
            n += bottleneck(cin, w, 2 if (i > 0 and j == 0) else 1, expansion)
            cin = w
    return n + linear(512, 10)


ALEXNET_FEATURES = (
    conv(3, 64, 11, True)
    + conv(64, 192, 5, True)
    + conv(192, 384, 3, True)
    + conv(384, 256, 3, True)
    + conv(256, 256, 3, True)
)  # = 2,469,696
ALEXNET_HEAD = 9216 * 4096 + 4096 + 4096 * 1024 + 1024 + 1024 * 10 + 10


def both(n: int) -> tuple[int, int]:
    """(trainable, total) of a model whose parameters are all trainable."""
    return (n, n)


# name -> (trainable, total), each derived from the layers (not read off the models).
EXPECTED_PARAMS = {
    # hidden Linear layers carry no bias (BatchNorm1d follows): weights + BN's 2 per unit
    "dnn": both(3072 * 1024 + bn(1024) + 1024 * 512 + bn(512) + 512 * 256 + bn(256) + linear(256, 10)),
    "cnn": both(
        conv(3, 32, 3, False)
        + bn(32)
        + conv(32, 64, 3, False)
        + bn(64)
        + conv(64, 128, 3, False)
        + bn(128)
        + linear(2048, 256)
        + linear(256, 10)
    ),
    "resnet": both(cifar_resnet([2, 2, 2], [64, 128, 256])),
    "custom_resnet": both(custom_resnet_count(4)),
    "lenet5": both(3 * 6 * 25 + 6 + 6 * 16 * 25 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10),
    "resnet9": both(
        conv(3, 64, 3, True)
        + bn(64)
        + conv(64, 128, 3, True)
        + bn(128)
        + 2 * (conv(128, 128, 3, True) + bn(128))
        + conv(128, 256, 3, True)
        + bn(256)
        + conv(256, 512, 3, True)
        + bn(512)
        + 2 * (conv(512, 512, 3, True) + bn(512))
        + linear(512, 10)
    ),
    "hw2_cnn": both(
        conv(3, 32, 5, True)
        + bn(32)
        + conv(32, 64, 5, True)
        + bn(64)
        + conv(64, 128, 5, True)
        + bn(128)
        + linear(2048, 100)
        + linear(100, 50)
        + linear(50, 10)
    ),
    "alexnet_transfer": (ALEXNET_HEAD, ALEXNET_HEAD + ALEXNET_FEATURES),
    "resnet18": both(cifar_resnet([2, 2, 2, 2], [64, 128, 256, 512])),
}

# Regression table: the counts as built once (a change to any architecture shows up here).
REGRESSION_PARAMS = {
    "alexnet_transfer": (41_958_410, 44_428_106),
    "cnn": (620_586, 620_586),
    "custom_resnet": (1_492_874, 1_492_874),
    "dnn": (3_807_242, 3_807_242),
    "hw2_cnn": (469_532, 469_532),
    "lenet5": (62_006, 62_006),
    "resnet": (2_777_674, 2_777_674),
    "resnet18": (11_173_962, 11_173_962),
    "resnet9": (6_575_370, 6_575_370),
}


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    """Every model, built once with defaults (alexnet_transfer on random features)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomFeaturesWarning)
        return {n: get_model(n, **({"pretrained": False} if n == "alexnet_transfer" else {})) for n in list_models()}


# ---- registry ------------------------------------------------------------------------------


def test_registry_holds_the_nine_models():
    assert list_models() == NAMES


@pytest.mark.parametrize("name", list_models())
def test_model_info(name):
    info = model_info(name)
    assert isinstance(info, ModelInfo)
    assert info.name == name
    # the report it reproduces is the one reference.yaml files its runs' published numbers under
    assert {n["report"] for n in REFERENCE if RUN_MODEL[n["run"]] == name} == {info.report}
    assert info.embedding is (name == "alexnet_transfer")
    assert info.description
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]
    for pname, p in info.arch_params.items():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
        assert p.default is not inspect.Parameter.empty
        assert not isinstance(p.annotation, str), f"{name}.{pname}: annotation must be a real type"


def test_published_numbers_live_only_in_reference_yaml():
    assert "reported_top1" not in {f.name for f in dataclasses.fields(ModelInfo)}
    assert {f.name for f in dataclasses.fields(ModelInfo)} == {
        "name",
        "builder",
        "report",
        "description",
        "embedding",
        "arch_params",
    }
    assert set(RUN_MODEL.values()) == set(NAMES)  # every model is trained by some run
    top1 = primary("top1")
    for name in NAMES:
        # every model has a published top-1 for at least one of its runs, under its own report
        entries = [e for run, e in top1.items() if RUN_MODEL[run] == name]
        assert entries, name
        assert {e["report"] for e in entries} == {model_info(name).report}
        assert all(0 < e["value"] <= 1 for e in entries), name


def test_arch_param_annotations_are_precise():
    # the types without their Annotated constraints and descriptions (test_schema checks those)
    a = {n: {k: t for k, t in typing.get_type_hints(model_info(n).builder).items() if k != "return"} for n in NAMES}
    assert all(
        typing.get_origin(p.annotation) is typing.Annotated for n in NAMES for p in model_info(n).arch_params.values()
    )
    assert a["dnn"] == {"hidden": tuple[int, ...], "batchnorm": bool}
    assert a["cnn"] == {"channels": tuple[int, int, int], "hidden": int, "batchnorm": bool, "dropout": float}
    assert a["resnet"] == a["resnet9"] == {}
    assert a["custom_resnet"] == {"expansion": typing.Literal[1, 2, 4, 8, 16, 32, 64], "dropout": float}
    assert a["hw2_cnn"] == {"dropout": float}
    assert a["lenet5"] == {"activation": typing.Literal["relu", "tanh", "sigmoid"]}
    assert typing.get_args(a["resnet18"]["activation"]) == ("relu", "leaky_relu", "tanh", "sigmoid")
    assert a["alexnet_transfer"] == {"skip": bool, "pretrained": bool, "weights": str | None, "image_size": int}
    defaults = {k: p.default for k, p in model_info("alexnet_transfer").arch_params.items()}
    assert defaults == {"skip": False, "pretrained": True, "weights": None, "image_size": 224}


def test_unknown_model_name():
    with pytest.raises(CifarlabError, match=r"unknown model 'foo'; known: alexnet_transfer, cnn, ") as exc:
        get_model("foo")
    assert "\n" not in str(exc.value)
    with pytest.raises(CifarlabError, match="'foo'"):
        model_info("foo")


def test_unknown_arch_option():
    with pytest.raises(CifarlabError, match=r"model 'lenet5' has no option 'depth'; options: activation"):
        get_model("lenet5", depth=3)


@pytest.mark.parametrize("name, arch", BAD_OPTION_VALUES)
def test_bad_option_values(name, arch):
    with pytest.raises(ParamsError):
        get_model(name, **arch)


# ---- every model: shape, finiteness, gradients ---------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name, built):
    model = built[name]
    model.train()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(out, torch.tensor([0, 9])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)


@pytest.mark.parametrize("name", list_models())
def test_parameter_counts(name, built):
    model = built[name]
    assert (n_params(model, trainable_only=True), n_params(model)) == EXPECTED_PARAMS[name]


def test_parameter_counts_literature_and_registry(built):
    assert EXPECTED_PARAMS["lenet5"] == (62_006, 62_006)
    assert EXPECTED_PARAMS["resnet9"] == (6_575_370, 6_575_370)
    assert EXPECTED_PARAMS["resnet18"] == (11_173_962, 11_173_962)
    assert ALEXNET_FEATURES == 2_469_696
    counts = {n: (n_params(m, trainable_only=True), n_params(m)) for n, m in built.items()}
    assert counts == REGRESSION_PARAMS


def test_get_model_is_deterministic():
    for name in NAMES:
        torch.manual_seed(123)
        a = build(name)
        torch.manual_seed(123)
        b = build(name)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_resnet18_activations(activation):
    torch.manual_seed(0)
    model = get_model("resnet18", activation=activation)
    kinds = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
    used = {kinds[type(m)] for m in model.modules() if type(m) in kinds}
    assert used == {activation}  # used everywhere, nothing else
    assert n_params(model) == 11_173_962
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_lenet5_tanh():
    model = get_model("lenet5", activation="tanh")
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_options_change_the_architecture():
    assert n_params(get_model("dnn", hidden=(100,), batchnorm=False)) == linear(3072, 100) + linear(100, 10)
    assert n_params(get_model("dnn", hidden=(100,))) == 3072 * 100 + bn(100) + linear(100, 10)
    assert n_params(get_model("dnn", hidden=())) == linear(3072, 10)
    assert n_params(get_model("custom_resnet", expansion=2)) == custom_resnet_count(2)
    drops = [m.p for m in get_model("hw2_cnn", dropout=0.5).modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.5, 0.5]
    drops = [m.p for m in get_model("custom_resnet", dropout=0.2).modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.2] * 16  # one per block: 3 + 4 + 6 + 3


def test_custom_resnet_shapes():
    model = get_model("custom_resnet").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = model.stem(x)
        assert x.shape == (2, 64, 16, 16)
        for layer, shape in zip(
            [model.layer1, model.layer2, model.layer3, model.layer4],
            [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)],
            strict=True,
        ):
            x = layer(x)
            assert x.shape == shape
    assert [len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 4, 6, 3]


# ---- alexnet_transfer ----------------------------------------------------------------------


def test_alexnet_features_frozen_and_stay_in_eval(built):
    model = built["alexnet_transfer"]
    model.train()
    assert model.training and model.head.training
    assert not model.features.training
    assert all(not m.training for m in model.features.modules())
    assert n_params(model.features, trainable_only=True) == 0
    assert n_params(model.features) == ALEXNET_FEATURES
    assert n_params(model, trainable_only=True) == n_params(model.head) == ALEXNET_HEAD
    model.eval()
    assert not model.training and not model.features.training


def test_alexnet_features_match_torchvision():
    torch.manual_seed(11)
    ours = alexnet_mod.alexnet_features()
    torch.manual_seed(11)
    theirs = torchvision.models.alexnet(weights=None).features
    assert repr(ours) == repr(theirs)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_alexnet_random_features_warn():
    with pytest.warns(RandomFeaturesWarning, match="RANDOM"):
        get_model("alexnet_transfer", pretrained=False)


def test_alexnet_embed_and_skip():
    torch.manual_seed(7)
    plain = build("alexnet_transfer", skip=False)
    torch.manual_seed(7)
    skip = build("alexnet_transfer", skip=True)
    assert n_params(skip) == n_params(plain)  # the skip adds no parameters
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        e_plain, e_skip = plain.eval().embed(x), skip.eval().embed(x)
        assert e_plain.shape == e_skip.shape == (2, 9216)
        assert not torch.allclose(e_plain, e_skip)
        assert not torch.allclose(plain.head(e_plain), skip.head(e_skip))  # = plain(x), skip(x)
        # The skip is exactly avgpool6(features[:9](x224)) added to the plain features.
        x224 = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        conv4 = skip.features[:9](x224)
        assert conv4.shape == (2, 256, 13, 13)
        extra = nn.functional.adaptive_avg_pool2d(conv4, (6, 6)).flatten(1)
        torch.testing.assert_close(e_skip, e_plain + extra)


def test_alexnet_image_size():
    model = build("alexnet_transfer", image_size=64)
    with torch.no_grad():
        assert model.eval().embed(torch.randn(2, 3, 32, 32)).shape == (2, 9216)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("TORCH_HUB", raising=False)

    def no_network(weights):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(alexnet_mod, "_download_state_dict", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"


def test_alexnet_offline_without_weights(empty_torch_home):
    assert alexnet_mod.hub_cache_path() == empty_torch_home
    with pytest.raises(WeightsError) as exc:
        get_model("alexnet_transfer")  # pretrained=True by default
    msg = str(exc.value)
    assert "\n" not in msg
    assert "alexnet_transfer.weights=/path/to/alexnet-owt-7be5be79.pth" in msg
    assert str(empty_torch_home) in msg
    assert "alexnet_transfer.pretrained=false" in msg


def random_alexnet_features_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    full = torchvision.models.alexnet(weights=None).state_dict()
    # The features.* part of a full torchvision state dict, plus one classifier key to show
    # that the rest is ignored (the full 61M-parameter file would be 244 MB).
    state = {k: v for k, v in full.items() if k.startswith("features.")}
    state["classifier.6.bias"] = full["classifier.6.bias"]
    return state


def assert_features_equal(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.features.state_dict()
    want = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_alexnet_weights_file(tmp_path, empty_torch_home):
    state = random_alexnet_features_state(seed=3)
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a weights file is not random: no warning
        model = get_model("alexnet_transfer", weights=str(path), skip=True)
    assert_features_equal(model, state)
    assert n_params(model, trainable_only=True) == ALEXNET_HEAD
    # A bare features state dict ("0.weight", ...) is accepted too.
    torch.save({k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}, path)
    assert_features_equal(get_model("alexnet_transfer", weights=str(path)), state)


def test_alexnet_weights_file_missing(tmp_path):
    missing = tmp_path / "nope" / "alexnet.pth"
    with pytest.raises(WeightsError, match="alexnet_transfer.weights") as exc:
        get_model("alexnet_transfer", weights=str(missing))
    assert str(missing) in str(exc.value)


def test_alexnet_weights_file_wrong_content(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(get_model("lenet5").state_dict(), path)
    with pytest.raises(WeightsError, match="not AlexNet feature weights"):
        get_model("alexnet_transfer", weights=str(path))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot load"):
        get_model("alexnet_transfer", weights=str(path))


def test_alexnet_pretrained_from_hub_cache(empty_torch_home):
    # The file already in the torch hub cache is used, with no download (which would raise).
    state = random_alexnet_features_state(seed=5)
    empty_torch_home.parent.mkdir(parents=True)
    torch.save(state, empty_torch_home)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = get_model("alexnet_transfer", pretrained=True)
    assert_features_equal(model, state)


def test_alexnet_corrupt_hub_cache(empty_torch_home):
    empty_torch_home.parent.mkdir(parents=True)
    empty_torch_home.write_bytes(b"truncated")
    with pytest.raises(WeightsError, match="delete it") as exc:
        get_model("alexnet_transfer")
    assert str(empty_torch_home) in str(exc.value)


def test_weights_file_name_is_torchvisions():
    """alexnet_transfer.py names the weights file without importing torchvision (stage start-up time)."""
    from urllib.parse import urlparse

    from cifarlab.models import alexnet_transfer as alexnet

    assert Path(urlparse(alexnet.imagenet_weights().url).path).name == alexnet.WEIGHTS_FILE_NAME


def test_stages_do_not_import_torchvision():
    """Every stage validates params against the model registry; torchvision costs ~2 s there."""
    import subprocess
    import sys

    code = "import sys, cifarlab.models, cifarlab.core.params; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
