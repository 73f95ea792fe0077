"""Contract tests over every architecture dhs-models registers (timm-style registry tests)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_models import build_model

# options a component needs to be built at all (timm needs a model name)
EXAMPLE_OPTIONS = {"timm": {"arch": "resnet10t"}}
# torchvision ImageNet networks are slow on CPU: exercised once, at one stamp size
BIG = {"efficientnet_v2_s", "convnext_tiny"}

OURS = sorted(n for n, c in plugins.components("architecture").items() if c.distribution == "dhs-models")


def _cases():
    for name in OURS:
        for px in (64,) if name in BIG else (64, 101):
            yield pytest.param(name, px, id=f"{name}-{px}")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_expected_architectures_registered():
    assert {"resnet18", "efficientnet_v2_s", "convnext_tiny", "bottlenecked_resnet", "timm"} <= set(OURS)


@pytest.mark.parametrize("name,px", list(_cases()))
def test_forward_backward(name, px):
    torch.manual_seed(0)
    model = build_model(name, **EXAMPLE_OPTIONS.get(name, {}))
    model.train()
    x = torch.randn(2, 3, px, px)
    out = model(x)
    assert out.shape == (2, 1)
    assert torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


def _torchvision_count(factory, head_in: int) -> int:
    # independent reference: the stock torchvision network with its 1000-way classifier
    # replaced, on paper, by a Linear(head_in, 1)
    return n_params(factory()) - (head_in * 1000 + 1000) + head_in + 1


@pytest.mark.parametrize(
    "name,options,expected",
    [
        ("resnet18", {}, 11_177_025),
        ("efficientnet_v2_s", {}, 20_178_769),
    ],
)
def test_published_parameter_counts(name, options, expected):
    assert n_params(build_model(name, **options)) == expected


def test_counts_match_torchvision_and_timm():
    import timm

    assert n_params(build_model("resnet18")) == _torchvision_count(torchvision.models.resnet18, 512)
    assert n_params(build_model("efficientnet_v2_s")) == _torchvision_count(
        torchvision.models.efficientnet_v2_s, 1280)
    assert n_params(build_model("convnext_tiny")) == _torchvision_count(torchvision.models.convnext_tiny, 768)
    ref = timm.create_model("resnet10t", pretrained=False, num_classes=1)
    assert n_params(build_model("timm", arch="resnet10t")) == n_params(ref)


def test_bottlenecked_resnet_matches_published_budget():
    n = n_params(build_model("bottlenecked_resnet"))
    assert abs(n - 194_433) / 194_433 < 0.01
    # the width knob scales the network (roughly quadratically)
    assert n_params(build_model("bottlenecked_resnet", base_ch=16)) < n / 2


def test_resnet18_small_input_keeps_resolution():
    model = build_model("resnet18", small_input=True)
    assert model.backbone.conv1.kernel_size == (3, 3) and model.backbone.conv1.stride == (1, 1)
    assert isinstance(model.backbone.maxpool, torch.nn.Identity)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)


def test_metadata_fusion_changes_head_and_uses_meta():
    torch.manual_seed(0)
    model = build_model("bottlenecked_resnet", base_ch=8, metadata={"columns": ["psfsize_r", "ebv"], "hidden": 8})
    assert model.head.in_features == model.feature_dim + 8
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    a = model(x, torch.tensor([[1.0, 0.0], [1.3, 0.1]]))
    b = model(x, torch.tensor([[5.0, 3.0], [-1.3, 0.9]]))
    assert a.shape == (2, 1) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="psfsize_r"):
        model(x)


def test_efficientnet_pretrained_from_local_file(tmp_path):
    torch.manual_seed(3)
    ref = torchvision.models.efficientnet_v2_s()
    path = tmp_path / "effv2s.pth"
    torch.save(ref.state_dict(), path)
    model = build_model("efficientnet_v2_s", pretrained=str(path))
    assert torch.equal(model.backbone.features[0][0].weight, ref.features[0][0].weight)
    assert n_params(model) == 20_178_769


def test_imagenet_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    """pretrained = "imagenet" reads torchvision's weights file from the torch cache, under the
    name torchvision's weights API gives it; nothing is downloaded when it is there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: pytest.fail("a cached weights file must not be downloaded again"))
    torch.manual_seed(5)
    ref = torchvision.models.resnet18()
    name = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    cache = tmp_path / "hub" / "checkpoints" / name
    cache.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), cache)
    for value in ("imagenet", True):
        model = build_model("resnet18", pretrained=value)
        assert torch.equal(model.backbone.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)


@pytest.mark.parametrize("value", [True, "imagenet"])
def test_imagenet_weights_offline_is_a_clear_error(value, tmp_path, monkeypatch):
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def offline(url, dst, **kwargs):
        calls.append((url, dst, kwargs))
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError) as info:
        build_model("efficientnet_v2_s", pretrained=value)
    cache = tmp_path / "hub" / "checkpoints" / "efficientnet_v2_s-dd5fe13b.pth"
    msg = str(info.value)
    assert str(cache) in msg and "efficientnet_v2_s-dd5fe13b.pth" in msg and "offline" in msg
    assert info.value.exit_code == 2 and not cache.exists()
    # the download is checked against the hash prefix in torchvision's file name
    (url, dst, kwargs), = calls
    assert url.startswith("https://") and dst == str(cache) and kwargs["hash_prefix"] == "dd5fe13b"


def test_imagenet_by_name_for_timm_asks_for_a_file():
    with pytest.raises(UserError, match="local weights file"):
        build_model("timm", arch="resnet10t", pretrained="imagenet")


def test_missing_or_unsafe_weights_file(tmp_path):
    with pytest.raises(UserError, match="no such weights file"):
        build_model("resnet18", pretrained=str(tmp_path / "nope.pth"))
    bad = tmp_path / "code.pth"
    torch.save({"fn": torch.nn.ReLU()}, bad)  # a pickled module object, not tensors
    with pytest.raises(UserError, match="pickled code"):
        build_model("resnet18", pretrained=str(bad))


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(UserError) as info:
        build_model("resnet1000")
    assert "bottlenecked_resnet" in str(info.value) and "resnet18" in str(info.value)


def test_unknown_timm_model():
    with pytest.raises(UserError, match="no such model"):
        build_model("timm", arch="not_a_real_net_xyz")
