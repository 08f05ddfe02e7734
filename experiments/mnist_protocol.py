"""The standard MNIST open-set protocol: 6 known digits, the other 4 unknown, 5 splits.

The splits are those of the public code of ARPL (Chen et al.) and of Vaze et al. (2022). Each
split trains the default recipe (``osr-train siamese``) on the training images of its 6 known
digits (validation split from them), and tests on all 10,000 MNIST test images: the 6 known
digits are the knowns, the other 4 the unknowns (no image of an unknown digit is used in
training, outlier synthesis or calibration; CIFAR-10 is not used here). Writes
``experiments/results/mnist_protocol.{json,md}``: AUROC per score and closed-set accuracy per
split, their mean and standard deviation, beside the published figures (quoted, not measured).

    export OSR_DATA_DIR=../shared/datasets
    python experiments/mnist_protocol.py                 # about 8.5 minutes a split on 2 CPU cores
    python experiments/mnist_protocol.py --splits 0 1    # some splits only
    python experiments/mnist_protocol.py --network wide  # the recipe on the other layers (osr-train --network)
    python experiments/mnist_protocol.py --threads 1 --rotation-weight 0.5   # with the rotation task (osr-train --rotation-weight)
    python experiments/mnist_protocol.py --device cuda --jobs 5   # a GPU, the five splits at once (one CPU thread each)
    python experiments/mnist_protocol.py --evaluate --device cuda --jobs 5   # the same checkpoints evaluated again (--device, --jobs: as trained)
    python experiments/mnist_protocol.py --splits 3 --results-name trial      # -> mnist_protocol_trial.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SPLITS = ([2, 4, 5, 9, 8, 3], [3, 2, 6, 9, 4, 0], [5, 8, 3, 2, 4, 6], [3, 7, 8, 4, 0, 5], [6, 3, 4, 9, 8, 2])
#: Mean AUROC (%) over the 5 splits as published (quoted, not reproduced here). MLS and OpenGAN
#: as cited in later papers.
PUBLISHED = {
    "Softmax": 97.8, "OpenMax": 98.1, "G-OpenMax": 98.4, "OSRCI": 98.8, "C2AE": 98.9, "CROSR": 99.1,
    "RPL": 98.9, "ARPL": 99.6, "MLS": 99.3, "OpenGAN": 99.9,
}
HELD_OUT = "mnist-test-unknown-classes"


def run_split(index: int, out_root: Path, data_dir: Path | None, recipe: str, reuse: bool = False,
              network: str | None = None, device: str = "auto", threads: int | None = None, evaluate: bool = False,
              rotation_weight: float | None = None, script_outliers: float | None = None) -> dict:
    """Train split ``index`` (or, with ``reuse``, read the metrics a previous run left; with
    ``evaluate``, evaluate its checkpoint again) and summarise it."""
    known = ",".join(str(d) for d in SPLITS[index])
    out = out_root / f"split-{index}"
    if evaluate:
        # osr-train evaluate: scores registered after the checkpoint was trained are fitted on its
        # training knowns; the training's own record (time, device) is kept.
        from osr_train.report import evaluate_command

        evaluated = evaluate_command(out / "model.pt", data_dir=data_dir, out=out / "evaluation", tsne=False)  # here, any device
        metrics = {**json.loads((out / "metrics.json").read_text()), "per_unknown_set": evaluated["per_unknown_set"],
                   "closed_set_accuracy": evaluated["closed_set_accuracy"]}
    elif reuse:
        metrics = json.loads((out / "metrics.json").read_text())
    else:
        from osr_train import TrainConfig, train

        config = TrainConfig.from_recipe(recipe, model="siamese", network=network, device=device, rotation_weight=rotation_weight,
                                         script_outliers=script_outliers)
        trained = train(config, "mnist", data_dir=data_dir, known_classes=known, work_dir=out, threads=threads)
        trained.save(out / "model.pt")
        trained.save_report(out)
        metrics = trained.metrics
    held_out = metrics["per_unknown_set"][HELD_OUT]
    return {
        "known": SPLITS[index], "closed_set_accuracy": metrics["closed_set_accuracy"],
        "auroc": {score: report["auroc"] for score, report in held_out["ood"].items()},
        "stored_score": metrics["score"], "at_threshold": held_out["at_threshold"],
        "training_seconds": metrics["training_seconds"], "architecture": metrics.get("architecture"),
        "training_device": metrics.get("training_device", "not recorded (before training_device was)"),
    }


def summarise(runs: list[dict]) -> dict:
    scores = runs[0]["auroc"].keys()
    def stats(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return {
        "auroc": {s: stats([r["auroc"][s] for r in runs]) for s in scores},
        "closed_set_accuracy": stats([r["closed_set_accuracy"] for r in runs]),
        "n_splits": len(runs),
    }


def markdown(recipe: str, runs: list[dict], summary: dict) -> str:
    scores = list(summary["auroc"])
    lines = [f"| MNIST, 6 known / 4 unknown digits ({recipe} recipe) | " + " | ".join(f"AUROC {s}" for s in scores) + " | closed-set |",
             "|---" * (len(scores) + 2) + "|"]
    for r in runs:
        lines.append(f"| split {''.join(map(str, r['known']))} | " + " | ".join(f"{100 * r['auroc'][s]:.2f} %" for s in scores)
                     + f" | {100 * r['closed_set_accuracy']:.2f} % |")
    lines.append(f"| **mean ± std ({summary['n_splits']} splits)** | "
                 + " | ".join(f"**{100 * summary['auroc'][s]['mean']:.2f} ± {100 * summary['auroc'][s]['std']:.2f} %**" for s in scores)
                 + f" | {100 * summary['closed_set_accuracy']['mean']:.2f} % |")
    lines += ["", "| published (quoted, mean AUROC over the 5 splits) | AUROC |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} % |" for name, value in PUBLISHED.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, nargs="*", default=list(range(len(SPLITS))), choices=range(len(SPLITS)))
    parser.add_argument("--recipe", default="best")
    parser.add_argument("--out", type=Path, default=Path("artifacts/protocol"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="summarise the metrics.json of earlier runs instead of training")
    parser.add_argument("--evaluate", action="store_true",
                        help="evaluate the checkpoints of earlier runs again (osr-train evaluate; scores added since are fitted) instead of training")
    parser.add_argument("--network", default=None, help="osr-train --network (default: the recipe's); named in the output files")
    parser.add_argument("--rotation-weight", type=float, default=None,
                        help="osr-train --rotation-weight (default: the recipe's); named in the output files")
    parser.add_argument("--script-outliers", type=float, default=None,
                        help="osr-train --script-outliers (default: the recipe's); named in the output files")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--jobs", type=int, default=1, help="splits trained at once, in processes of one CPU thread each")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's CPU threads for one split at a time (osr-train --threads; default: one per core)")
    parser.add_argument("--results-name", default=None,
                        help="write experiments/results/mnist_protocol_NAME.{json,md} (default: the recipe and options, as the "
                             "checkpoints' folder): a trial run then leaves the quoted results alone")
    args = parser.parse_args()
    name = args.recipe if args.network is None else f"{args.recipe}-{args.network}"
    if args.rotation_weight is not None:
        name += f"-rotation{args.rotation_weight:g}"
    if args.script_outliers is not None:
        name += f"-scripts{args.script_outliers:g}"
    work = [(i, args.out / name, args.data_dir, args.recipe, args.reuse, args.network, args.device, 1 if args.jobs > 1 else args.threads, args.evaluate,
             args.rotation_weight, args.script_outliers)
            for i in args.splits]
    if args.jobs > 1 and not (args.reuse or args.evaluate):
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            runs = pool.starmap(run_split, work)
    else:
        runs = [run_split(*job) for job in work]
    summary = summarise(runs)
    network = "" if args.network is None else f" --network {args.network}"
    if args.rotation_weight is not None:
        network += f" --rotation-weight {args.rotation_weight:g}"
    if args.script_outliers is not None:
        network += f" --script-outliers {args.script_outliers:g}"
    device = "" if args.device == "auto" else f" --device {args.device}"
    jobs = "" if args.jobs == 1 else f" --jobs {args.jobs}"
    if args.jobs == 1 and args.threads is not None:
        jobs += f" --threads {args.threads}"
    report = {"recipe": args.recipe, "network": args.network, "rotation_weight": args.rotation_weight,
              "script_outliers": args.script_outliers, "splits": runs, "summary": summary, "published_mean_auroc_percent": PUBLISHED,
              "command": f"python experiments/mnist_protocol.py --recipe {args.recipe}{network}{device}{jobs} --splits {' '.join(map(str, args.splits))}",
              "training_devices": sorted({r["training_device"] for r in runs})}
    if args.results_name is not None:
        report["command"] += f" --results-name {args.results_name}"
        name = args.results_name
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"mnist_protocol_{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"mnist_protocol_{name}.md").write_text(markdown(name, runs, summary))
    print(markdown(name, runs, summary))


if __name__ == "__main__":
    main()
