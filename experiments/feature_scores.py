"""Feature-space scores against the stored score: the prototype score and kNN (Sun et al. 2022).

For MNIST checkpoints: the AUROC of the model's stored score, of the registered ``prototype``
score (nearest of 10 k-means centres a class), of the cosine similarity to the 10th nearest of
18,000 training embeddings at three layers (``osr_train.feature_scores``), and of the stored
score plus the prototype score (each standardised on 2,000 held-out training knowns). Banks,
centres and standardisation come from training images of the known classes only; no test
image and no unknown is used to fit anything.

    export OSR_DATA_DIR=../shared/datasets
    # the standard protocol's five split checkpoints (experiments/mnist_protocol.py's output):
    python experiments/feature_scores.py --protocol artifacts/protocol/best
    # a ten-digit model against unknown folders (tools/make_near_ood.py, make_letters.py, CIFAR-10):
    python experiments/feature_scores.py --model artifacts/siamese/model.pt \\
        --unknown /tmp/near-ood/* /tmp/letters2k "$OSR_DATA_DIR/cifar10-test-jpeg"

Writes ``experiments/results/feature_scores.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osr_infer.data.folders import load_image_folder
from osr_infer.data.mnist import load_mnist
from osr_infer.metrics import auroc
from osr_train.checkpoint import load_checkpoint
from osr_train.feature_scores import KnnScore, Standardised, hidden_features
from osr_train.models import classifier_of
from osr_train.scoring import fit_prototypes, prototype_score, scores_of
from osr_train.training import Normalizer

RESULTS = Path(__file__).resolve().parent / "results"
HELD_OUT = 2_000  # training knowns kept out of the bank, to standardise two scores before adding them
BANK = 18_000
#: (layer, k): the kNN variants measured, each on a bank of BANK training embeddings.
KNN_VARIANTS = (("hidden_pre", 10), ("hidden", 10), ("penultimate", 10))


def column_names(stored: str) -> list[str]:
    knn = [f"kNN {layer} (k={k})" for layer, k in KNN_VARIANTS]
    return [stored, "prototype", *knn, f"{stored} + prototype"]


class FeatureScorer:
    """Fits every score of :func:`column_names` on one checkpoint's training knowns: the kNN
    banks and the prototypes (``osr_train.scoring.fit_prototypes``, as osr-train fits them) on
    BANK images, the standardisation of the sum on HELD_OUT others."""

    def __init__(self, checkpoint: Path, train_images: np.ndarray, train_labels: np.ndarray, seed: int = 0) -> None:
        self.model, self.spec, _ = load_checkpoint(checkpoint)
        self.contract = self.spec.preprocessing
        order = np.random.default_rng(seed).permutation(len(train_images))[: BANK + HELD_OUT]
        images = self.contract.conform(train_images[order])
        features = self.features(images, conform=False)
        bank = {name: values[:BANK] for name, values in features.items()}
        held = {name: values[BANK:] for name, values in features.items()}
        self.knn = [KnnScore(k=k).fit(bank[layer]) for layer, k in KNN_VARIANTS]
        labels = np.array([self.spec.class_names.index(str(digit)) for digit in train_labels[order][:BANK]])  # class indices
        params = fit_prototypes(classifier_of(self.model), torch.from_numpy(images[:BANK]), torch.from_numpy(labels), Normalizer(self.contract))
        self.prototypes = torch.tensor(params["prototypes"])
        self.stored_z = Standardised().fit(self._stored(held))
        self.prototype_z = Standardised().fit(self._prototype(held))

    def features(self, images: np.ndarray, conform: bool = True) -> dict[str, np.ndarray]:
        """``conform``: lay raw images out first (MNIST arrays); decoded folders already are."""
        return hidden_features(self.model, self.contract.conform(images) if conform else images, self.contract)

    def _stored(self, features: dict[str, np.ndarray]) -> np.ndarray:
        logits = torch.from_numpy(features["logits"])
        return scores_of(logits, torch.from_numpy(features["penultimate"]), {}, self.spec.temperature)[self.spec.score]

    def _prototype(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return prototype_score(torch.from_numpy(features["hidden_pre"]), self.prototypes).numpy()

    def scores(self, images: np.ndarray, conform: bool = True) -> list[np.ndarray]:
        features = self.features(images, conform)
        stored, prototype = self._stored(features), self._prototype(features)
        knn = [scorer.score(features[layer]) for scorer, (layer, _) in zip(self.knn, KNN_VARIANTS, strict=True)]
        return [stored, prototype, *knn, self.stored_z(stored) + self.prototype_z(prototype)]


def known_digits(spec) -> list[int]:  # noqa: ANN001 - a ModelSpec
    if spec.dataset.reference != "mnist":
        raise SystemExit(f"feature_scores.py measures MNIST checkpoints; this one was trained on {spec.dataset.reference!r}")
    return [int(name) for name in spec.class_names]


def protocol(root: Path, train, test) -> dict:  # noqa: ANN001 - ImageSets
    """Each split of the standard protocol: its knowns' training images fit the scores; all
    10,000 test digits are scored, the split's 4 other digits being the unknowns."""
    splits: list[dict[str, Any]] = []
    for checkpoint in sorted(root.glob("split-*/model.pt")):
        _, spec, _ = load_checkpoint(checkpoint)
        known = known_digits(spec)
        mask = np.isin(train.labels, known)
        scorer = FeatureScorer(checkpoint, train.images[mask], train.labels[mask])
        is_known = np.isin(test.labels, known)
        scores = scorer.scores(test.images)
        splits.append({"split": checkpoint.parent.name, "known": known,
                       "auroc": {name: auroc(s[is_known], s[~is_known]) for name, s in zip(column_names(spec.score), scores, strict=True)}})
        print(splits[-1]["split"], {k: round(100 * v, 2) for k, v in splits[-1]["auroc"].items()}, flush=True)
    if not splits:
        raise SystemExit(f"no split-*/model.pt under {root}")
    names = list(splits[0]["auroc"])
    mean = {n: statistics.fmean(s["auroc"][n] for s in splits) for n in names}
    std = {n: statistics.stdev([s["auroc"][n] for s in splits]) if len(splits) > 1 else 0.0 for n in names}
    return {"root": str(root), "splits": splits, "mean": mean, "std": std}


def unknown_sets(checkpoint: Path, folders: list[Path], train, test) -> dict:  # noqa: ANN001 - ImageSets
    """A model of all its known digits against each unknown folder (AUROC against the test digits)."""
    _, spec, _ = load_checkpoint(checkpoint)
    known = known_digits(spec)
    mask = np.isin(train.labels, known)
    scorer = FeatureScorer(checkpoint, train.images[mask], train.labels[mask])
    known_scores = scorer.scores(test.images[np.isin(test.labels, known)])
    rows: list[dict[str, Any]] = []
    for folder in folders:
        if not folder.is_dir():
            print(f"skipped {folder}: not a folder", flush=True)
            continue
        images = load_image_folder(folder, contract=scorer.contract)
        scores = scorer.scores(images.images, conform=False)  # decoding applied the contract already
        rows.append({"set": folder.name, "n": len(images),
                     "auroc": {name: auroc(k, u) for name, k, u in zip(column_names(spec.score), known_scores, scores, strict=True)}})
        print(rows[-1]["set"], {k: round(100 * v, 2) for k, v in rows[-1]["auroc"].items()}, flush=True)
    return {"model": str(checkpoint), "architecture": spec.architecture, "sets": rows}


def markdown(report: dict) -> str:
    lines = []
    if "protocol" in report:
        p = report["protocol"]
        names = list(p["mean"])
        lines += [f"| MNIST protocol, AUROC ({p['root']}) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {s['split']} (known {''.join(map(str, s['known']))}) | " + " | ".join(f"{100 * s['auroc'][n]:.2f} %" for n in names) + " |"
                  for s in p["splits"]]
        lines.append("| **mean ± std** | " + " | ".join(f"**{100 * p['mean'][n]:.2f} ± {100 * p['std'][n]:.2f} %**" for n in names) + " |")
        lines.append("")
    if "unknown_sets" in report:
        u = report["unknown_sets"]
        names = list(u["sets"][0]["auroc"])
        lines += [f"| unknown set, AUROC against the MNIST test digits ({u['model']}) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {r['set']} ({r['n']:,}) | " + " | ".join(f"{100 * r['auroc'][n]:.2f} %" for n in names) + " |" for r in u["sets"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", type=Path, help="a folder of split-*/model.pt (experiments/mnist_protocol.py's --out/RECIPE)")
    parser.add_argument("--model", type=Path, help="a checkpoint of MNIST digits, scored against --unknown folders")
    parser.add_argument("--unknown", type=Path, nargs="*", default=[], help="folders of unknown images (with --model)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", "../shared/datasets")))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.protocol is None and args.model is None:
        parser.error("give --protocol, --model (with --unknown), or both")
    if args.model is not None and not args.unknown:
        parser.error("--model needs --unknown folders")
    torch.set_num_threads(args.threads)
    train, test = load_mnist(args.data_dir, "train"), load_mnist(args.data_dir, "test")
    report: dict = {"command": "python experiments/feature_scores.py " + " ".join(sys.argv[1:]), "bank": BANK, "held_out": HELD_OUT}
    if args.protocol is not None:
        report["protocol"] = protocol(args.protocol, train, test)
    if args.model is not None:
        report["unknown_sets"] = unknown_sets(args.model, args.unknown, train, test)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feature_scores.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "feature_scores.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
