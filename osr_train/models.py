"""The seed's networks: a small CNN classifier, and its Siamese (shared-weight) variant."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import torch
from torch import nn

from osr_infer.spec import ModelSpec



class ConvNet(nn.Module):
    """The seed's baseline CNN, sized by the model spec's input shape and class count.

    conv C->8 k5 p2, ReLU, maxpool 2; conv 8->16 k5 p2, ReLU, maxpool 2;
    linear 16*(S//4)^2 -> 128, ReLU; 128->32, ReLU; 32->classes. At the seed's 1x28x28 input
    and ten classes that is exactly its 108,362 parameters.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 8, kernel_size=5, stride=1, padding=2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5, stride=1, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * (height // 4) * (width // 4), 128)
        self.fc2 = nn.Linear(128, 32)
        self.fc3 = nn.Linear(32, num_classes)
        self.relu = nn.ReLU()

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutions, flattened: what the first hidden layer ``fc1`` reads."""
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return torch.flatten(x, 1)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """``fc1``'s output (before its activation) -> the 32-d penultimate embedding."""
        return self.relu(self.fc2(self.relu(hidden)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 32-d penultimate embedding (used by feature-space scores and t-SNE)."""
        return self.head(self.fc1(self.trunk(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.features(x))

    def forward_one(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier ``x -> logits`` (a two-branch model's ``forward`` takes pairs)."""
        return ConvNet.forward(self, x)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the penultimate embedding in one pass."""
        feats = self.features(x)
        return self.fc3(feats), feats

    def forward_with_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, the penultimate embedding and the first hidden layer's output before its
        activation (128-d, what the prototype score reads), in one pass."""
        hidden = self.fc1(self.trunk(x))
        feats = self.head(hidden)
        return self.fc3(feats), feats, hidden


class WideConvNet(ConvNet):
    """An edge-sized wider network: three blocks of conv 3x3 + batch norm + ReLU + maxpool 2
    (C->16->32->64 channels) as its trunk, then the seed's head (128, 32, classes).

    At 1x28x28 and ten classes: 101,722 parameters (about 0.4 MB as ONNX) and 2.0 M
    multiply-adds (4.0 MFLOP) per image, against the seed network's 0.9 M; batch norm is folded
    into the convolutions on export.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        nn.Module.__init__(self)  # not ConvNet's layers: its trunk() is replaced below
        channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for c_in, c_out in ((channels, 16), (16, 32), (32, 64)):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.fc1 = nn.Linear(64 * (height // 8) * (width // 8), 128)
        self.fc2 = nn.Linear(128, 32)
        self.fc3 = nn.Linear(32, num_classes)
        self.relu = nn.ReLU()

    def trunk(self, x: torch.Tensor) -> torch.Tensor:  # ConvNet's head follows
        return self.body(x)


class WideLeakyConvNet(WideConvNet):
    """`WideConvNet` whose head (the two hidden linear layers) uses a leaky ReLU (slope
    `HEAD_SLOPE`) instead of a ReLU; the same layers and parameters.

    Why: outlier exposure teaches the ReLU head to send outliers to an all-zero embedding,
    where every logit is the last layer's bias. On MNIST 98 % of the CIFAR-10 images end there,
    and so do 11 to 18 odd test digits (broken or dotted strokes), which then tie with the
    unknowns at one constant score: that tie was most of the AUROC lost. A leaky head has
    no flat zero region, so every input keeps a ranking.
    """

    HEAD_SLOPE = 0.1

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        leaky = nn.functional.leaky_relu
        return leaky(self.fc2(leaky(hidden, self.HEAD_SLOPE)), self.HEAD_SLOPE)


class TwoBranch:
    """The same layers used as one branch twice: ``forward_one`` is the exported classifier.

    Stage 1 trains the class-count output as an embedding with a contrastive loss on pairs;
    stage 2 fine-tunes the same output as class logits with cross-entropy.
    """

    if TYPE_CHECKING:  # ConvNet's, beside which this is mixed in (defined here, it would hide it)
        def forward_one(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x2 is None:
            return self.forward_one(x1)
        # One pass over both halves is the same computation as two branch calls, and faster.
        out = self.forward_one(torch.cat([x1, x2]))
        return out[: len(x1)], out[len(x1) :]


class SiameseNet(TwoBranch, ConvNet):  # type: ignore[misc]  # forward takes pairs
    """The seed's Siamese model: `ConvNet` trained in two stages."""


class WideSiameseNet(TwoBranch, WideConvNet):  # type: ignore[misc]  # forward takes pairs
    """`WideConvNet` trained in the two Siamese stages."""


class WideLeakySiameseNet(TwoBranch, WideLeakyConvNet):  # type: ignore[misc]  # forward takes pairs
    """`WideLeakyConvNet` trained in the two Siamese stages."""


ARCHITECTURES: dict[str, type[ConvNet]] = {
    "ConvNet": ConvNet, "SiameseNet": SiameseNet, "WideConvNet": WideConvNet, "WideSiameseNet": WideSiameseNet,
    "WideLeakyConvNet": WideLeakyConvNet, "WideLeakySiameseNet": WideLeakySiameseNet,
}


def build_model(spec: ModelSpec) -> ConvNet:
    """The network a model spec describes: its architecture, input shape and class count."""
    if spec.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {spec.architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[spec.architecture](spec.n_classes, spec.input_shape)


def classifier_of(model: ConvNet) -> Classifier:
    """The single-branch classifier ``x -> logits`` of any architecture."""
    return _SingleBranch(model) if isinstance(model, TwoBranch) else model


class _SingleBranch(nn.Module):
    """A two-branch model seen as the classifier it exports."""

    def __init__(self, model: ConvNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_one(x)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_features(x)

    def forward_with_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.forward_with_layers(x)


#: What scoring and evaluation take: a network with ``forward_with_features`` and ``forward_with_layers``.
Classifier: TypeAlias = "ConvNet | _SingleBranch"
