"""The torch side of the scores: each registered score's function and fitting step, and the
module ``x -> (logits, probs, score)`` that is evaluated in PyTorch and exported.

The same module is what gets exported, so the ONNX graph's ``score`` output is by
construction the score the threshold was chosen for. The facts about each score (range,
what it is computed from, whether it is fitted) are in `osr_infer.scores`; this module
adds, per name, the torch function and the fit. Scores that need fitted statistics keep
them as buffers, and as ``score_params`` in the model spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from osr_train.models import Classifier
from torch import nn

from osr_infer.scores import SCORES, ScoreSpec, score_spec
from osr_train.training import full_fp32

#: The model's input normalisation (``osr_train.training.Normalizer``): raw pixels to network input.
Normalize = Callable[[torch.Tensor], torch.Tensor]


def mahalanobis_score(feats: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Minus the smallest Mahalanobis distance (squared) to a class mean, tied covariance."""
    diff = feats.unsqueeze(1) - means.unsqueeze(0)  # (N, C, D)
    dist = ((diff @ precision) * diff).sum(-1)  # (N, C)
    return -dist.min(dim=1).values


@torch.inference_mode()
@full_fp32()
def fit_mahalanobis(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, normalize: Normalize, batch_size: int = 4096) -> dict[str, Any]:
    """Class means and a shared (Ledoit-Wolf shrunk) precision of the penultimate features."""
    from sklearn.covariance import LedoitWolf

    classifier.eval()
    feats = torch.cat([classifier.forward_with_features(normalize(images[i : i + batch_size]))[1] for i in range(0, len(images), batch_size)])
    feats_np = feats.double().cpu().numpy()
    labels_np = labels.cpu().numpy()
    classes = np.unique(labels_np)
    means = np.stack([feats_np[labels_np == c].mean(0) for c in classes])
    centred = feats_np - means[np.searchsorted(classes, labels_np)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return {"means": means.astype(np.float32).tolist(), "precision": precision.astype(np.float32).tolist()}


def logits_and_hidden(classifier: Classifier, images: torch.Tensor, normalize: Normalize, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and the first hidden layer's output (``forward_with_layers``) of uint8 images,
    in batches, in eval mode: what the fitted hidden-layer scores are fitted on."""
    classifier.eval()
    parts = [classifier.forward_with_layers(normalize(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[2] for p in parts])


#: k-means centres per class of the prototype score: on the MNIST protocol's five splits, 10 per
#: class and the nearest one did as well as the 10th nearest of 18,000 training embeddings (mean
#: AUROC 99.42 against 99.40 %, docs/research/2026-11-27-feature-space-scores.md); 100 x 128 numbers for ten classes.
PROTOTYPES_PER_CLASS = 10


def prototype_score(hidden: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each row of ``hidden`` to the nearest row of ``prototypes`` (unit rows).
    The length is an rsqrt of a sum of squares, not ``norm``: ONNX Runtime's symbolic shape
    inference (run before INT8 quantisation) loses the shape of the ReduceL2 that ``norm`` exports to."""
    return prototype_cosines(hidden, prototypes).max(dim=1).values


def prototype_cosines(hidden: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``(N, K)``: the cosine similarity of each row of ``hidden`` to each (unit) prototype."""
    unit = hidden * torch.rsqrt((hidden * hidden).sum(dim=1, keepdim=True).clamp_min(1e-24))
    return unit @ prototypes.T


@torch.inference_mode()
@full_fp32()
def fit_prototypes(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, normalize: Normalize, batch_size: int = 4096,
                   per_class: int = PROTOTYPES_PER_CLASS) -> dict[str, Any]:
    """Unit-length k-means centres (``per_class`` a class, seeded) of the training knowns'
    normalised hidden features (``forward_with_layers``' third output)."""
    from sklearn.cluster import KMeans

    _, hidden = logits_and_hidden(classifier, images, normalize, batch_size)
    hidden_np = hidden.double().cpu().numpy()
    hidden_np /= np.maximum(np.linalg.norm(hidden_np, axis=1, keepdims=True), 1e-12)
    labels_np = labels.cpu().numpy()
    centres = []
    for c in np.unique(labels_np):
        members = hidden_np[labels_np == c]
        k = min(per_class, len(members))
        centres.append(KMeans(n_clusters=k, n_init=3, random_state=0).fit(members).cluster_centers_ if k < len(members) else members)
    prototypes = np.concatenate(centres)
    prototypes /= np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
    return {"prototypes": prototypes.astype(np.float32).tolist()}


def kl_from_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(logits)) = logsumexp(logits) - mean(logits) - log(classes), written as
    one logsumexp of shifted logits: ONNX Runtime's symbolic shape inference (run before INT8
    quantisation) loses the shape of a ReduceLogSumExp output, so nothing may follow it."""
    classes = logits.shape[1]
    return torch.logsumexp(logits - (logits.sum(dim=1, keepdim=True) / classes + math.log(classes)), dim=1)


#: Training knowns held out of the prototypes' k-means to standardise kl_prototype's two terms
#: (at most a fifth of them): scored on the centres' own members, the prototype term would
#: look closer than it is for any new known.
STANDARDISATION_HELD_OUT = 2_000


def kl_prototype_score(logits: torch.Tensor, hidden: torch.Tensor, prototypes: torch.Tensor,
                       standardisation: torch.Tensor) -> torch.Tensor:
    """The two standardised scores added, ``(kl - m_kl) / s_kl + (prototype - m_p) / s_p`` with
    ``standardisation = [m_kl, s_kl, m_p, s_p]``, given in the prototype score's units (times
    ``s_p``, plus ``m_p``; the same ranking): ``prototype + (s_p / s_kl) * (kl - m_kl)``. Its
    float32 rounding is then the cosine's (about 1e-6) plus the KL's scaled down (s_p is about
    0.03 on MNIST, s_kl about 5); in standardised units, or in the KL's, the cosine's rounding
    would be magnified 30 to 160 times, beyond the export parity tolerance.

    Written for ONNX Runtime's symbolic shape inference (run before INT8 quantisation), which
    loses the shape of a ReduceMax or ReduceLogSumExp output whenever arithmetic follows it: the
    KL is ``-mean(log_softmax(logits)) - log(classes)`` (stable, no logsumexp), and it is added to
    every prototype's cosine before the one max, ``max_j(cos_j + a) = max_j(cos_j) + a``."""
    classes = logits.shape[1]
    kl = -torch.log_softmax(logits, dim=1).mean(dim=1, keepdim=True) - math.log(classes)
    s = standardisation
    return (prototype_cosines(hidden, prototypes) + (kl - s[0]) * (s[3] / s[1])).max(dim=1).values


@torch.inference_mode()
@full_fp32()
def fit_kl_prototype(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, normalize: Normalize, batch_size: int = 4096,
                     held_out: int = STANDARDISATION_HELD_OUT, seed: int = 0) -> dict[str, Any]:
    """Prototypes (`fit_prototypes`) on the training knowns but ``held_out`` of them (a
    seeded random draw, at most a fifth), and each term's mean and standard deviation on those."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).to(images.device)
    n_held = max(1, min(held_out, len(images) // 5))
    held, rest = order[:n_held], order[n_held:]
    params = fit_prototypes(classifier, images[rest], labels[rest], normalize, batch_size)
    prototypes = torch.tensor(params["prototypes"], device=images.device)
    logits, hidden = logits_and_hidden(classifier, images[held], normalize, batch_size)
    terms = [kl_from_uniform(logits).double().cpu().numpy(), prototype_score(hidden, prototypes).double().cpu().numpy()]
    standardisation = []
    for values in terms:
        std = float(values.std())
        standardisation += [float(values.mean()), std if std > 1e-6 else 1.0]
    return {**params, "standardisation": standardisation}


#: OpenMax's settings, as in Bendale & Boult's paper and its common re-implementations: the Weibull
#: is fitted to each class's 20 largest distances; the "eucos" distance is the Euclidean distance
#: divided by 200 plus the cosine distance.
OPENMAX_TAIL = 20
OPENMAX_EUCLIDEAN_SCALE = 200.0


def openmax_distances(logits: torch.Tensor, mean_logits: torch.Tensor) -> torch.Tensor:
    """``(N, C)``: each row's "eucos" distance to each class's mean logit vector (no norm or
    cdist: plain sums of squares, which every exporter and ONNX Runtime's shape inference keep)."""
    diff = logits.unsqueeze(1) - mean_logits.unsqueeze(0)  # (N, C, C)
    euclidean = torch.sqrt((diff * diff).sum(-1).clamp_min(1e-12))
    dot = logits @ mean_logits.T
    lengths = torch.sqrt((logits * logits).sum(1, keepdim=True).clamp_min(1e-12)) * torch.sqrt((mean_logits * mean_logits).sum(1).clamp_min(1e-12))
    return euclidean / OPENMAX_EUCLIDEAN_SCALE + (1 - dot / lengths)


def weibull_cdf(distances: torch.Tensor, weibull: torch.Tensor) -> torch.Tensor:
    """Each class's fitted Weibull CDF at the distances; ``weibull`` rows are (shape, scale, shift):
    ``1 - exp(-((d - shift) / scale) ** shape)``, 0 up to the shift."""
    shape, scale, shift = weibull[:, 0], weibull[:, 1], weibull[:, 2]
    return 1 - torch.exp(-torch.pow((distances - shift).clamp_min(0) / scale, shape))


def openmax_score(logits: torch.Tensor, mean_logits: torch.Tensor, weibull: torch.Tensor) -> torch.Tensor:
    """OpenMax's recalibration with every class revised (alpha = the number of classes): the logit
    ranked r-th (0 the highest) keeps ``1 - (C - r) / C * cdf`` of itself and gives the rest to an
    unknown logit; the score is the highest known probability of the softmax over the C + 1. The
    ranks are counted by pairwise comparison (no sort or TopK in the graph)."""
    classes = logits.shape[1]
    ranks = (logits.unsqueeze(2) < logits.unsqueeze(1)).to(logits.dtype).sum(2)  # how many logits are higher
    discount = (classes - ranks) / classes * weibull_cdf(openmax_distances(logits, mean_logits), weibull)
    revised = logits * (1 - discount)
    unknown = (logits * discount).sum(1, keepdim=True)
    return torch.softmax(torch.cat([unknown, revised], dim=1), dim=1)[:, 1:].max(dim=1).values


def fit_weibull_tail(distances: np.ndarray, tail: int = OPENMAX_TAIL) -> list[float]:
    """(shape, scale, shift) of a Weibull fitted (scipy, maximum likelihood) to the ``tail``
    largest distances, shifted so that the smallest of them sits at 1 (libMR's FitHigh). Too few
    or identical distances, or a fit that fails, give a steep step at the largest one."""
    from scipy.stats import weibull_min

    largest = np.sort(np.asarray(distances, dtype=np.float64))[-tail:]
    shift = float(largest[0]) - 1.0
    if len(largest) < 3 or np.ptp(largest) < 1e-9:
        return [50.0, float(largest[-1]) - shift, shift]
    try:
        shape, _, scale = weibull_min.fit(largest - shift, floc=0)
    except (ValueError, RuntimeError):  # scipy's FitError is a RuntimeError
        shape, scale = math.nan, math.nan
    if not (math.isfinite(shape) and math.isfinite(scale) and shape > 0 and scale > 0):
        return [50.0, float(largest[-1]) - shift, shift]
    return [float(shape), float(scale), shift]


@torch.inference_mode()
@full_fp32()
def fit_openmax(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, normalize: Normalize, batch_size: int = 4096,
                tail: int = OPENMAX_TAIL) -> dict[str, Any]:
    """Per class, the mean logit vector of the training knowns it classifies correctly (all of
    the class's knowns where none is) and a Weibull of their largest distances to it."""
    logits, _ = logits_and_hidden(classifier, images, normalize, batch_size)
    logits = logits.double().cpu()
    labels = labels.cpu()
    correct = logits.argmax(1) == labels
    means, weibulls = [], []
    for c in range(logits.shape[1]):
        members = logits[(labels == c) & correct]
        if len(members) == 0:
            members = logits[labels == c] if bool((labels == c).any()) else logits
        mean = members.mean(0)
        means.append(mean)
        weibulls.append(fit_weibull_tail(openmax_distances(members, mean.unsqueeze(0))[:, 0].numpy(), tail))
    return {"mean_logits": torch.stack(means).float().tolist(), "weibull": weibulls}


@dataclass(frozen=True)
class TorchScore:
    """A score's torch implementation: ``compute(logits, probs, features, buffers)``, where the
    features are what the score's spec ``uses`` (the penultimate embedding, or the hidden layer)."""

    spec: ScoreSpec
    # (logits, probs, features, params); the features are None for a score whose spec uses none
    compute: Callable[[torch.Tensor, torch.Tensor, Any, dict[str, torch.Tensor]], torch.Tensor]
    fit: Callable[..., dict[str, Any]] | None = None  # (classifier, uint8 images, labels, normalize) -> score_params


TORCH_SCORES: dict[str, TorchScore] = {
    "msp": TorchScore(SCORES["msp"], lambda logits, probs, feats, p: probs.max(dim=1).values),
    "max_logit": TorchScore(SCORES["max_logit"], lambda logits, probs, feats, p: logits.max(dim=1).values),
    "energy": TorchScore(SCORES["energy"], lambda logits, probs, feats, p: torch.logsumexp(logits, dim=1)),
    "kl_uniform": TorchScore(SCORES["kl_uniform"], lambda logits, probs, feats, p: kl_from_uniform(logits)),
    "mahalanobis": TorchScore(
        SCORES["mahalanobis"], lambda logits, probs, feats, p: mahalanobis_score(feats, p["means"], p["precision"]), fit_mahalanobis
    ),
    "prototype": TorchScore(SCORES["prototype"], lambda logits, probs, hidden, p: prototype_score(hidden, p["prototypes"]), fit_prototypes),
    "kl_prototype": TorchScore(
        SCORES["kl_prototype"],
        lambda logits, probs, hidden, p: kl_prototype_score(logits, hidden, p["prototypes"], p["standardisation"]),
        fit_kl_prototype,
    ),
    "openmax": TorchScore(
        SCORES["openmax"], lambda logits, probs, feats, p: openmax_score(logits, p["mean_logits"], p["weibull"]), fit_openmax
    ),
}
assert set(TORCH_SCORES) == set(SCORES), "every registered score needs its torch implementation"


def torch_score(name: str) -> TorchScore:
    score_spec(name)  # the registry's error for an unknown name
    return TORCH_SCORES[name]


class ScoredClassifier(nn.Module):
    """Wraps a single-branch classifier and appends softmax probabilities and a score."""

    def __init__(self, classifier: Classifier, score: str = "msp", score_params: dict[str, Any] | None = None,
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = float(temperature)  # probs = softmax(logits / temperature); the logits stay as they are
        self.score = torch_score(score)
        self.classifier = classifier
        self.score_name = score
        self.score_params = dict(score_params or {})
        missing = [name for name in self.score.spec.params if name not in self.score_params]
        if missing:
            raise ValueError(f"the {score} score needs fitted parameters: {', '.join(missing)} missing (see {getattr(self.score.fit, '__name__', 'its fit')})")
        self._buffer_names = []
        for key, value in self.score_params.items():
            self.register_buffer(key, torch.tensor(value, dtype=torch.float32))
            self._buffer_names.append(key)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.score.spec.uses == "features":
            logits, feats = self.classifier.forward_with_features(x)
        elif self.score.spec.uses == "hidden":
            logits, _, feats = self.classifier.forward_with_layers(x)
        else:
            logits, feats = self.classifier(x), None
        probs = torch.softmax(logits / self.temperature if self.temperature != 1.0 else logits, dim=1)
        buffers = {name: getattr(self, name) for name in self._buffer_names}
        return logits, probs, self.score.compute(logits, probs, feats, buffers)


def scores_of(logits: torch.Tensor, feats: torch.Tensor, fitted: dict[str, dict[str, Any]], temperature: float = 1.0,
              hidden: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Every registered score for a batch of outputs (``feats`` the penultimate embedding, ``hidden``
    the first hidden layer's output); fitted scores only where ``fitted`` has their parameters
    (and, for those that read it, ``hidden`` is given); the probabilities (msp) at the model's
    softmax ``temperature``."""
    probs = torch.softmax(logits / temperature, 1)
    out = {}
    for name, score in TORCH_SCORES.items():
        inputs = hidden if score.spec.uses == "hidden" else feats
        if score.spec.fitted and (name not in fitted or inputs is None):
            continue
        params = {k: torch.tensor(v, device=logits.device) for k, v in fitted.get(name, {}).items()}
        out[name] = score.compute(logits, probs, inputs, params).cpu().numpy()
    return out
