"""The paper's backbones as specified in Georgescu & Ionescu (2019), Section 3.1, and Barsoum's VGG-13.

Each test states one property of the architectures; the numbers come from the paper, from VGG-16 /
VGG-f as published (Simonyan & Zisserman 2015; Chatfield et al. 2014) and from Microsoft's FERPlus code.
"""

import numpy as np
import pytest
import torch
from torch import nn

import vrfer
from vrfer.models.vgg import LRN, VGG13Barsoum, VGGF, VGGFace
from vrfer.inference.preprocess import prepare
from vrfer.training import dsd

ARCHS = ["vgg-face", "vgg-f", "vgg13-barsoum", "vrfer-cnn", "vrfer-cnn-small", "efficientnet-lite0"]
# small crops where the architecture allows, so the tests stay fast on 2 CPU cores
SMALL = {"vgg-face": 64, "vgg-f": 96, "vgg13-barsoum": 64, "vrfer-cnn": 48, "vrfer-cnn-small": 48,
         "efficientnet-lite0": 64}
MODES = ["full", "upper-occluded", "visible-half"]


def conv_params(model) -> int:
    return sum(p.numel() for _, c in model.backbone_convs() for p in c.parameters())


def dropouts_after_convs(model) -> list[tuple[str, float]]:
    """(name of the conv layer a dropout follows, rate) in forward order."""
    out, last_conv = [], None
    for name, m in model.features.named_children():
        if isinstance(m, nn.Conv2d):
            last_conv = name
        elif isinstance(m, nn.Dropout):
            out.append((last_conv, m.p))
    return out


# ---------------------------------------------------------------- every architecture trains

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ARCHS)
def test_every_architecture_runs_forward_and_backward_in_every_input_mode(name, mode):
    torch.manual_seed(0)
    model = vrfer.create_model(name, pretrained=False, input_mode=mode, image_size=SMALL[name])
    x = torch.randn(2, *model.cfg.input_shape)
    logits = model(x)
    assert logits.shape == (2, 8)
    logits.logsumexp(1).sum().backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["vgg-face", "vgg-f"])
def test_paper_backbones_take_224_faces_and_their_112x224_visible_half(name):
    """The global max pool makes one set of weights serve the full face and its visible lower half."""
    full = vrfer.create_model(name, pretrained=False).eval()
    assert full.cfg.input_shape == (3, 224, 224)
    half = vrfer.create_model(name, pretrained=False, input_mode="visible-half").eval()
    assert half.cfg.input_shape == (3, 112, 224)
    half.load_state_dict(full.state_dict())
    with torch.no_grad():
        for m in (full, half):
            y = m(torch.randn(1, *m.cfg.input_shape))
            assert y.shape == (1, 8) and torch.isfinite(y).all()


def test_registry_configs_match_the_paper_and_the_weight_releases():
    face, f, bars = (vrfer.models.get_config(n) for n in ("vgg-face", "vgg-f", "vgg13-barsoum"))
    assert (face.image_size, face.in_chans, face.std) == (224, 3, (1.0, 1.0, 1.0))
    assert face.mean == pytest.approx((129.186279296875, 104.76238250732422, 93.59396362304688))
    assert (f.image_size, f.in_chans, f.std) == (224, 3, (1.0, 1.0, 1.0))
    assert f.mean == pytest.approx((122.80, 114.89, 101.57), abs=0.01)
    assert (bars.image_size, bars.in_chans) == (64, 1)


def test_grayscale_faces_are_replicated_to_the_three_channels_of_the_rgb_backbones():
    cfg = vrfer.create_model("vgg-face", pretrained=False, input_mode="visible-half").cfg
    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    x = prepare(faces, cfg)
    assert x.shape == (2, 3, 112, 224)
    pixels = x + torch.tensor(cfg.mean).view(1, 3, 1, 1)  # undo the mean subtraction (std is 1)
    assert torch.allclose(pixels[:, 0], pixels[:, 1], atol=1e-4) and torch.allclose(pixels[:, 0], pixels[:, 2], atol=1e-4)


# ---------------------------------------------------------------- VGG-face (Section 3.1)

def test_vgg_face_keeps_vgg16s_13_conv_layers_with_their_published_size():
    model = vrfer.create_model("vgg-face", pretrained=False)
    names = [n for n, _ in model.backbone_convs()]
    assert names == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                     "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    assert conv_params(model) == 14_714_688
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for _, c in model.backbone_convs())
    assert model.features.conv4_1.weight.shape == (512, 256, 3, 3)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4  # pool1-pool4; pool5 is folded into the global max pool
    assert isinstance(model.pool, nn.AdaptiveMaxPool2d) and model.pool.output_size == 1


def test_vgg_face_has_six_dropout_layers_after_the_conv_layers_of_blocks_4_and_5():
    model = vrfer.create_model("vgg-face", pretrained=False)
    got = dropouts_after_convs(model)
    assert [n for n, _ in got] == ["conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    assert [p for _, p in got] == pytest.approx([0.30, 0.35, 0.40, 0.45, 0.50, 0.55])


@pytest.mark.parametrize("name,width", [("vgg-face", 512), ("vgg-f", 256)])
def test_new_8_way_classifier_is_drawn_from_a_gaussian_with_std_0_1(name, width):
    torch.manual_seed(0)
    head = vrfer.create_model(name, pretrained=False).classifier
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (width, 8)
    assert float(head.weight.detach().std()) == pytest.approx(0.1, abs=0.012)
    assert abs(float(head.weight.detach().mean())) < 0.01
    assert torch.all(head.bias == 0)


@pytest.mark.parametrize("name,size", [("vgg-face", 64), ("vgg-f", 96)])
def test_fully_connected_layers_are_replaced_by_one_global_max_pool(name, size):
    model = vrfer.create_model(name, pretrained=False, image_size=size).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expect = model.classifier(model.features(x).amax(dim=(2, 3)))
        assert torch.allclose(model(x), expect, atol=1e-5)
    assert not any(isinstance(m, nn.Linear) for m in model.features.modules())


def test_vgg_face_dsd_sparsity_follows_the_paper():
    """Section 3.1: no pruning on conv1, 0.2 on the second conv layer rising to 0.7 on the last."""
    rates = dsd.layer_sparsity_targets(vrfer.create_model("vgg-face", pretrained=False, image_size=32), [0.2, 0.7])
    names = list(rates)
    assert len(rates) == 13 and rates[names[0]] == 0.0
    assert rates[names[1]] == pytest.approx(0.2) and rates[names[-1]] == pytest.approx(0.7)


# ---------------------------------------------------------------- VGG-f (Chatfield et al. 2014)

def test_vgg_f_conv_layers_are_chatfields():
    model = vrfer.create_model("vgg-f", pretrained=False)
    convs = dict(model.backbone_convs())
    assert list(convs) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    c1, c2 = convs["conv1"], convs["conv2"]
    assert (c1.out_channels, c1.kernel_size, c1.stride, c1.padding) == (64, (11, 11), (4, 4), (0, 0))
    assert (c2.out_channels, c2.kernel_size, c2.stride, c2.padding) == (256, (5, 5), (1, 1), (2, 2))
    for n in ("conv3", "conv4", "conv5"):
        assert (convs[n].out_channels, convs[n].kernel_size, convs[n].padding) == (256, (3, 3), (1, 1))
    published = (64 * 3 * 11 * 11 + 64) + (256 * 64 * 5 * 5 + 256) + 3 * (256 * 256 * 9 + 256)
    assert conv_params(model) == published == 2_203_392


def test_vgg_f_layer_order_is_conv_relu_lrn_pool_then_dropout_after_conv3_to_conv5():
    model = vrfer.create_model("vgg-f", pretrained=False)
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Conv2d", "ReLU", "LRN", "MaxPool2d", "Conv2d", "ReLU", "LRN", "MaxPool2d",
                     "Conv2d", "ReLU", "Dropout", "Conv2d", "ReLU", "Dropout", "Conv2d", "ReLU", "Dropout"]
    assert dropouts_after_convs(model) == [("conv3", 0.2), ("conv4", 0.2), ("conv5", 0.2)]


def test_vgg_f_feature_map_at_224_is_13x13_as_in_the_original():
    """MatConvNet pads pool1 bottom/right by one: 224 -> conv1 54 -> pool1 27 -> pool2 13 (-> pool5 6 = fc6's 6x6)."""
    model = vrfer.create_model("vgg-f", pretrained=False).eval()
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 224, 224)).shape == (1, 256, 13, 13)
        assert model.forward_features(torch.zeros(1, 3, 112, 224)).shape[-2:] == (6, 13)
        assert model.forward_features(torch.zeros(1, 3, 24, 48)).shape[-2:] == (1, 2)  # FER+ 48x48, lower half


def test_lrn_is_matconvnets_normalize_with_param_5_1_2e5_075():
    """MatConvNet: y = x / (kappa + alpha * sum over 5 neighbouring channels of x^2)^beta, alpha = 1e-4/5."""
    lrn = LRN()
    assert (lrn.size, lrn.k, lrn.beta) == (5, 1.0, 0.75) and lrn.alpha == pytest.approx(1e-4)
    x = torch.rand(1, 7, 2, 2) * 100
    sq = torch.nn.functional.pad(x ** 2, (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, i:i + 7] for i in range(5))
    assert torch.allclose(lrn(x), x / (1 + 1e-4 / 5 * window) ** 0.75, rtol=1e-5)


def test_vgg_f_dsd_sparsity_follows_the_paper():
    rates = list(dsd.layer_sparsity_targets(vrfer.create_model("vgg-f", pretrained=False), [0.2, 0.5]).values())
    assert rates == pytest.approx([0.0, 0.2, 0.3, 0.4, 0.5])


# ---------------------------------------------------------------- VGG-13 (Barsoum et al. 2016)

def test_barsoum_vgg13_layout():
    model = vrfer.create_model("vgg13-barsoum", pretrained=False)
    widths = [c.out_channels for _, c in model.backbone_convs()]
    assert widths == [64, 64, 128, 128, 256, 256, 256, 256, 256, 256]
    assert [m.p for m in model.features if isinstance(m, nn.Dropout)] == [0.25] * 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(4096, 1024), (1024, 1024), (1024, 8)]
    assert [m.p for m in model.head if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_barsoum_vgg13_uses_the_4x4_map_as_is_at_64x64():
    model = vrfer.create_model("vgg13-barsoum", pretrained=False).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        direct = model.classifier(model.head(model.features(x).flatten(1)))
        assert torch.allclose(model(x), direct)


# ---------------------------------------------------------------- registry round trip

def test_a_vgg_f_model_saves_and_reloads_through_the_registry(tmp_path):
    model = vrfer.create_model("vgg-f", pretrained=False, input_mode="visible-half").eval()
    path = tmp_path / "vggf.safetensors"
    vrfer.models.save_model(model, path)
    again = vrfer.models.load_checkpoint(path).eval()
    assert again.cfg == model.cfg and isinstance(again, VGGF)
    x = torch.randn(1, *model.cfg.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_builders_return_the_documented_classes():
    assert isinstance(vrfer.create_model("vgg-face", pretrained=False, image_size=32), VGGFace)
    assert isinstance(vrfer.create_model("vgg13-barsoum", pretrained=False), VGG13Barsoum)
