import math

import pytest
import torch

from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.spec import ModelSpec
from osr_train.losses import ContrastiveLoss, pair_labels
from osr_train.models import (
    ARCHITECTURES, ConvNet, SiameseNet, WideConvNet, WideLeakyConvNet, WideLeakySiameseNet, WideSiameseNet, build_model,
    classifier_of,
)
from osr_train.recipes import NETWORKS

DIGITS = tuple(str(d) for d in range(10))
MNIST_SHAPE = (1, 28, 28)


def test_exact_layer_shapes():
    shapes = {name: tuple(p.shape) for name, p in ConvNet(10, MNIST_SHAPE).named_parameters()}
    assert shapes == {
        "conv1.weight": (8, 1, 5, 5), "conv1.bias": (8,),
        "conv2.weight": (16, 8, 5, 5), "conv2.bias": (16,),
        "fc1.weight": (128, 784), "fc1.bias": (128,),
        "fc2.weight": (32, 128), "fc2.bias": (32,),
        "fc3.weight": (10, 32), "fc3.bias": (10,),
    }
    assert sum(p.numel() for p in ConvNet(10, MNIST_SHAPE).parameters()) == 108_362
    assert ConvNet(10, MNIST_SHAPE)(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert ConvNet(10, MNIST_SHAPE).features(torch.zeros(3, 1, 28, 28)).shape == (3, 32)


def test_architectures_registry_names_every_network():
    assert ARCHITECTURES == {"ConvNet": ConvNet, "SiameseNet": SiameseNet, "WideConvNet": WideConvNet, "WideSiameseNet": WideSiameseNet,
                             "WideLeakyConvNet": WideLeakyConvNet, "WideLeakySiameseNet": WideLeakySiameseNet}
    assert {a for pair in NETWORKS.values() for a in pair.values()} == set(ARCHITECTURES)


def test_the_leaky_head_keeps_a_ranking_where_the_relu_head_collapses_to_the_bias():
    """Same layers and parameters; where the ReLU head's embedding is all zero (every logit is
    the last bias, so such inputs tie), the leaky head's logits still differ between inputs.
    A ReLU checkpoint (the previous default) loads into its own class and computes as before."""
    torch.manual_seed(0)
    relu, leaky = WideConvNet(10, MNIST_SHAPE).eval(), WideLeakyConvNet(10, MNIST_SHAPE).eval()
    leaky.load_state_dict(relu.state_dict())  # the same parameters, key for key
    with torch.no_grad():
        for model in (relu, leaky):  # every head unit off: the ReLU head's embedding is zero for any input
            model.fc1.bias.fill_(-100.0)
            model.fc2.bias.fill_(-100.0)
        x = torch.randn(4, *MNIST_SHAPE)
        relu_logits, relu_feats = relu.forward_with_features(x)
        leaky_logits, _ = leaky.forward_with_features(x)
    assert torch.count_nonzero(relu_feats) == 0 and torch.allclose(relu_logits, relu.fc3.bias.expand(4, -1))
    assert leaky_logits.max(1).values.unique().numel() == 4  # four inputs, four scores: no tie
    assert NETWORKS["wide"]["siamese"] == "WideLeakySiameseNet" and NETWORKS["wide-relu"]["siamese"] == "WideSiameseNet"
    assert isinstance(WideLeakySiameseNet(10, MNIST_SHAPE), WideLeakyConvNet)


def multiply_adds(model: torch.nn.Module, shape: tuple[int, int, int]) -> int:
    """Multiply-adds of the convolutions and linear layers for one image (what FLOP counts count)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output[0].numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total


def test_wide_network_stays_edge_sized_and_outweighs_the_seed_in_compute():
    """The issue's edge budget: at most 5 MFLOP an image and an ONNX file of at most 1 MB."""
    seed, wide = ConvNet(10, MNIST_SHAPE), WideLeakyConvNet(10, MNIST_SHAPE)
    assert multiply_adds(seed, MNIST_SHAPE) == 888_768  # 0.9 M, as --help says
    wide_macs = multiply_adds(wide, MNIST_SHAPE)
    assert 2 * multiply_adds(seed, MNIST_SHAPE) < wide_macs and 2 * wide_macs <= 5_000_000
    n_params = sum(p.numel() for p in wide.parameters())
    assert n_params == 101_722 and 4 * n_params < 1_000_000
    logits, feats = wide.forward_with_features(torch.zeros(3, *MNIST_SHAPE))
    assert logits.shape == (3, 10) and feats.shape == (3, 32)
    rgb = WideLeakyConvNet(12, (3, 32, 32))
    assert rgb.fc1.in_features == 64 * 4 * 4 and rgb(torch.zeros(2, 3, 32, 32)).shape == (2, 12)


def test_wide_siamese_pair_forward_is_two_branch_calls_and_batch_norm_is_eval_in_the_classifier():
    torch.manual_seed(0)
    model = WideSiameseNet(10, MNIST_SHAPE)
    model.train()(torch.randn(64, *MNIST_SHAPE) * 3 + 1)  # move the batch-norm running statistics
    model.eval()
    a, b = torch.randn(4, *MNIST_SHAPE), torch.randn(4, *MNIST_SHAPE)
    out1, out2 = model(a, b)
    torch.testing.assert_close(out1, model.forward_one(a))
    torch.testing.assert_close(out2, model.forward_one(b))
    single = classifier_of(model)
    torch.testing.assert_close(single(a), model.forward_one(a))
    torch.testing.assert_close(single(a[:1]), model.forward_one(a)[:1])  # eval: no batch statistics


@pytest.mark.parametrize("architecture", ["ConvNet", "SiameseNet"])
def test_build_model_from_the_default_spec_is_the_seed_network(architecture):
    spec = ModelSpec(class_names=DIGITS, architecture=architecture)
    assert spec.preprocessing == PREPROCESSING and spec.input_shape == MNIST_SHAPE
    model = build_model(spec)
    assert type(model) is ARCHITECTURES[architecture]
    assert sum(p.numel() for p in model.parameters()) == 108_362
    assert classifier_of(model)(torch.zeros(2, *MNIST_SHAPE)).shape == (2, 10)


def test_build_model_follows_the_spec_at_3x32x32_with_12_classes():
    names = tuple(f"class-{i}" for i in range(12))
    spec = ModelSpec(class_names=names, architecture="ConvNet", preprocessing=PreprocessContract.for_shape(32, 3))
    assert spec.input_shape == (3, 32, 32) and spec.n_classes == 12
    model = build_model(spec)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["conv1.weight"] == (8, 3, 5, 5)
    assert shapes["fc1.weight"] == (128, 16 * 8 * 8)
    assert shapes["fc3.weight"] == (12, 32) and shapes["fc3.bias"] == (12,)
    x = torch.zeros(4, 3, 32, 32)
    assert model(x).shape == (4, 12)
    logits, feats = model.forward_with_features(x)
    assert logits.shape == (4, 12) and feats.shape == (4, 32)
    siamese = build_model(spec.replace(architecture="SiameseNet"))
    out1, out2 = siamese(x[:2], x[2:])
    assert out1.shape == out2.shape == (2, 12)


def test_build_model_refuses_an_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'ResNet'.*ConvNet, SiameseNet, WideConvNet, WideSiameseNet, WideLeakyConvNet"):
        build_model(ModelSpec(class_names=DIGITS, architecture="ResNet"))


def test_siamese_pair_forward_is_two_branch_calls():
    torch.manual_seed(0)
    model = SiameseNet(10, MNIST_SHAPE).eval()
    a, b = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    out1, out2 = model(a, b)
    torch.testing.assert_close(out1, model.forward_one(a))
    torch.testing.assert_close(out2, model.forward_one(b))
    torch.testing.assert_close(classifier_of(model)(a), model.forward_one(a))


def test_contrastive_loss_matches_hand_computation():
    out1 = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    out2 = torch.tensor([[3.0, 4.0], [0.5, 0.0], [1.0, 1.0]])
    label = torch.tensor([0, 1, 1])  # same, different, different
    # d = 5, 0.5, 0 (pairwise_distance adds eps=1e-6 to the difference)
    # same pair: d^2 = 25; different: 2 * (2 - 0.5)^2 = 4.5; 2 * (2 - 0)^2 = 8
    expected = (25 + 4.5 + 8) / 3
    loss = ContrastiveLoss(margin=2.0)(out1, out2, label)
    assert math.isclose(loss.item(), expected, rel_tol=1e-4)
    # Different pairs beyond the margin cost nothing.
    assert ContrastiveLoss(2.0)(out1[:1], out2[:1], torch.tensor([1])).item() == 0.0


def test_pair_labels_split_batch_in_halves():
    first, second, pair = pair_labels(torch.tensor([1, 2, 3, 1, 5, 3]))
    assert first.tolist() == [1, 2, 3] and second.tolist() == [1, 5, 3]
    assert pair.tolist() == [0, 1, 0]
