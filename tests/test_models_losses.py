import math

import torch

from osr_train.losses import ContrastiveLoss, pair_labels
from osr_train.models import ConvNet, SiameseNet, classifier_of


def test_exact_layer_shapes():
    shapes = {name: tuple(p.shape) for name, p in ConvNet().named_parameters()}
    assert shapes == {
        "conv1.weight": (8, 1, 5, 5), "conv1.bias": (8,),
        "conv2.weight": (16, 8, 5, 5), "conv2.bias": (16,),
        "fc1.weight": (128, 784), "fc1.bias": (128,),
        "fc2.weight": (32, 128), "fc2.bias": (32,),
        "fc3.weight": (10, 32), "fc3.bias": (10,),
    }
    assert sum(p.numel() for p in ConvNet().parameters()) == 108_362
    assert ConvNet()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert ConvNet().features(torch.zeros(3, 1, 28, 28)).shape == (3, 32)


def test_siamese_pair_forward_is_two_branch_calls():
    torch.manual_seed(0)
    model = SiameseNet().eval()
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
