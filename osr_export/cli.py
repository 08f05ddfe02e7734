"""``osr-export``: turn a trained checkpoint into verified ONNX / TorchScript artefacts."""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from osr_infer import cli_support
from osr_export import DEFAULT_OPSET
from osr_infer.parity_rule import DEFAULT_ATOL

#: Plain help, as osr-train and osr-infer print it (rich markup would eat the [default: ...] texts).
app = typer.Typer(
    add_completion=False, rich_markup_mode=None, help="Export a trained checkpoint to ONNX and/or TorchScript, verified against PyTorch."
)
console = Console(stderr=True, emoji=False)


class Format(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    all = "all"
    web = "web"
    triton = "triton"


class Quantize(str, Enum):
    int8 = "int8"


def fail(message: str, code: int = 2) -> NoReturn:
    cli_support.fail(console, message, code)


@app.command()
@cli_support.interruptible(console, "nothing was written")
def export(
    checkpoint: Path = typer.Argument(
        Path("artifacts/siamese/model.pt"), help="A final model.pt written by osr-train.", show_default=True,
        metavar="CHECKPOINT",
    ),
    format: Format = typer.Option(  # noqa: A002
        Format.all, "--format", "-f",
        help="Which artefact(s) to write: onnx, torchscript, all (those two), web (a static page folder, web/, that runs the "
             "verified ONNX model in a browser with ONNX Runtime Web), or triton (a Triton model repository, triton/osr/config.pbtxt "
             "and triton/osr/1/model.onnx, around the verified ONNX model).",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder [default: the checkpoint's folder].", show_default=False),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help=f"ONNX opset ({DEFAULT_OPSET} or newer)."),
    score_threshold: Optional[float] = typer.Option(
        None, "--score-threshold", help="Store this threshold on the model's score instead of the checkpoint's [default: the checkpoint's].", show_default=False
    ),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", hidden=True, help="Refused: osr-infer's rule on the top softmax probability (use --score-threshold).",
        show_default=False,
    ),
    quantize: Optional[Quantize] = typer.Option(
        None, "--quantize", help="Also write model.int8.onnx (static QDQ, calibrated on validation knowns) [default: fp32 only].", show_default=False
    ),
    atol: float = typer.Option(DEFAULT_ATOL, "--atol", help="Largest |difference| to PyTorch allowed on logits, probs and score."),
    probe_size: str = typer.Option(
        "1024", "--probe-size", help="Probe images to verify on, or 'all' (e.g. 10,000 MNIST test + 10,000 CIFAR-10)."
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Data folder for the probe and INT8 calibration [default: $OSR_DATA_DIR or ./data].", show_default=False
    ),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the verification report as JSON here.", show_default=False),
    int8_min_agreement: float = typer.Option(
        0.95, "--int8-min-agreement", help="Refuse the INT8 model if fewer open-set predictions agree with fp32."
    ),
    calibration_size: int = typer.Option(512, "--calibration-size", help="Validation images used to calibrate INT8."),
    verify_provider: Optional[list[str]] = typer.Option(
        None, "--verify-provider", metavar="NAME", help="Also run the verified ONNX model's probe on this provider (openvino, cuda, "
        "tensorrt, coreml, dnnl, rocm; repeatable) against the CPU provider: decision flips, top-class disagreements, max score "
        "difference. Any flip fails the export unless --max-flips allows it [default: none, the CPU provider only].",
        show_default=False,
    ),
    provider_option: Optional[list[str]] = typer.Option(
        None, "--provider-option", metavar="KEY=VALUE", help="An option of the --verify-provider runtime (repeatable), e.g. "
        "INFERENCE_PRECISION_HINT=bf16 for openvino, trt_fp16_enable=True for tensorrt [default: the provider's own; openvino: "
        "INFERENCE_PRECISION_HINT=f32].", show_default=False,
    ),
    max_flips: int = typer.Option(0, "--max-flips", help="Decision flips a --verify-provider may make on the probe."),
    web_runtime: Optional[Path] = typer.Option(
        None, "--web-runtime", help="ONNX Runtime Web's dist folder for --format web [default: $OSR_WEB_RUNTIME, or "
        "osr_export/web/node_modules after `make web-runtime`].", show_default=False,
    ),
) -> None:
    """Export CHECKPOINT, check each artefact against PyTorch on a probe batch, and write it only if it passes.

    Writes model.onnx and/or model.torchscript.pt (and model.int8.onnx with --quantize int8), or web/, or triton/.
    Exit codes: 0 written, 1 verification failed (nothing written), 2 bad input.
    """
    from osr_export.pipeline import FORMATS, ExportOptions, run_export
    from osr_export.probe import parse_probe_size
    from osr_infer.errors import VerificationError
    from osr_infer.providers import parse_options

    if threshold is not None:
        fail("--threshold is osr-infer's rule on the top softmax probability; the threshold stored with the model's own "
             "score is --score-threshold")
    with cli_support.library_errors(console, FLAGS):
        options = ExportOptions(
            checkpoint=checkpoint, formats=FORMATS if format is Format.all else (format.value,), out=out, opset=opset,
            score_threshold=score_threshold, quantize=quantize.value if quantize else None, atol=atol,
            probe_size=parse_probe_size(probe_size), data_dir=data_dir, report=report, int8_min_agreement=int8_min_agreement,
            calibration_size=calibration_size, web_runtime=web_runtime, verify_providers=tuple(verify_provider or ()),
            provider_options=parse_options(list(provider_option or [])), max_flips=max_flips,
        )
        try:
            result = run_export(options, reporter=cli_support.ConsoleReporter(console, flags=FLAGS, transient=True))
        except VerificationError as exc:
            failed = getattr(exc, "report", None)
            if failed is not None:
                print_export_report(failed)
            raise
    print_export_report(result)
    for target in result.written:
        console.print(f"wrote {target}", highlight=False)


def print_export_report(report) -> None:  # noqa: ANN001 - an osr_export.pipeline.ExportReport
    """The parity table of every format, and the INT8 model's agreement with fp32."""
    from osr_export.quantize import int8_table
    from osr_export.verify import print_reports

    if report.formats:
        print_reports(console, report.formats, report.title)
    if report.int8 is not None:
        console.print(int8_table(report.int8))
        style = "bold green" if report.int8.passed else "bold red"
        console.print(f"[{style}]{report.int8.summary()}[/]", highlight=False, soft_wrap=True)
    elif "int8" in report.record and not report.record["int8"].get("passed"):
        console.print(f"[bold red]{report.record['int8']['summary']}[/]", highlight=False, soft_wrap=True)
    if report.providers:
        print_provider_parity(report.providers)


def print_provider_parity(reports: list) -> None:  # of osr_infer.provider_parity.ProviderParity
    """Each provider against the CPU provider, per probe source, and its verdict."""
    from rich import box
    from rich.table import Table

    table = Table(title="Providers vs the CPU provider (the same ONNX model, the probe)", box=box.SIMPLE_HEAD)
    for column in ("provider", "source", "images", "decision flips", "top-class disagreements", "max |Δscore|"):
        table.add_column(column, justify="left" if column in ("provider", "source") else "right")
    for parity in reports:
        for group in parity.groups:
            table.add_row(parity.provider, group.name, f"{group.images:,}", str(group.decision_flips), str(group.top_class_disagreements),
                          f"{group.max_abs_score_difference:.2g}")
    console.print(table)
    for parity in reports:
        for note in parity.notes:
            console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        style = "bold green" if parity.passed else "bold red"
        console.print(f"[{style}]{parity.summary()}[/]", highlight=False, soft_wrap=True)


#: The flags of the library's parameters whose names differ from ``--`` and the name dashed.
FLAGS = {"formats": "--format", "checkpoint": "CHECKPOINT", "provider": "--verify-provider", "verify_providers": "--verify-provider",
         "provider_options": "--provider-option"}


def _quiet_exporter_logs() -> None:
    """torch.onnx warns about optional torchvision ops on every export; not our concern."""
    for name in ("torch.onnx._internal.exporter._registration", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    cli_support.require_training_install(console, "osr-export")
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_time=False, show_path=False)])
    _quiet_exporter_logs()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 140  # logs and CI: room for the parity table
    app()


if __name__ == "__main__":
    main()
