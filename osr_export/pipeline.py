"""What ``osr-export`` does, as a function: load, export, verify against PyTorch, then write.

>>> from osr_export import export
>>> report = export("artifacts/siamese/model.pt", formats=("onnx",), quantize="int8")   # doctest: +SKIP
>>> report.passed, report.written                                                       # doctest: +SKIP

Every artefact is first written to a temporary file beside its target and loaded back from
there by the runtime that will serve it (ONNX Runtime, ``torch.jit.load``); only when every
requested format passes verification are the temporary files renamed into place. A failure
anywhere leaves the output folder as it was.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from osr_infer.metadata import MetadataError, ModelMetadata
from osr_export.probe import Probe
from osr_export.runners import Runner
from osr_infer.outputs import ModelOutputs
from osr_export import DEFAULT_OPSET
from osr_export.verify import Check, FormatReport, verify_format
from osr_infer.errors import ExportError, ModelError, OSRError, OutputError, ParameterError, VerificationError
from osr_infer.params import NONE, Constraint, Interval, OneOf, validate
from osr_infer.reporting import SILENT, Reporter
from osr_infer.parity_rule import DEFAULT_ATOL
from osr_infer.io import atomic_path

log = logging.getLogger(__name__)

#: What ``--format all`` writes.
FORMATS = ("onnx", "torchscript")
#: Every format: ``web`` is a static page folder around the verified ONNX model (web_export.py),
#: ``triton`` a Triton model repository around it (triton_export.py).
ALL_FORMATS = (*FORMATS, "web", "triton")
#: The formats that are folders around the verified ONNX model.
FOLDER_FORMATS = ("web", "triton")
FILENAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "int8": "model.int8.onnx", "web": "web", "triton": "triton"}
DEFAULT_CHECKPOINT = Path("artifacts") / "siamese" / "model.pt"
#: Images per call while verifying (and the large batch size verification checks).
BATCH_SIZE = 1024


@dataclass
class ExportReport:
    """What `export` did: ``passed`` (every format verified), ``written`` (the files and
    folders, all or none), ``formats`` (one `FormatReport` per format
    verified against PyTorch), ``int8`` (the INT8 model's agreement report, when quantised) and
    ``record`` (all of it as JSON, what ``--report`` writes)."""

    passed: bool
    written: list[Path]
    formats: list[FormatReport]
    int8: Any | None
    record: dict[str, Any]
    #: One `osr_infer.provider_parity.ProviderParity` per provider of ``verify_providers``.
    providers: list[Any] = field(default_factory=list)

    @property
    def title(self) -> str:
        r = self.record
        return f"Parity vs PyTorch (atol {r['atol']:g}, threshold {r['threshold']:g}, score {r['score']})"


def _load(checkpoint: Path, threshold: float | None):  # noqa: ANN202 - (ScoredClassifier, spec, metadata)
    from osr_export.source import metadata_from_checkpoint, scored_from_checkpoint

    if not checkpoint.exists() and (checkpoint.parent / "checkpoint.pt").exists():
        raise ModelError(
            f"checkpoint not found: {checkpoint} (only the intermediate {checkpoint.parent / 'checkpoint.pt'} exists: "
            "training is still running, or was interrupted: finish it with osr-train ... `resume`)"
        )
    if checkpoint.is_dir():
        raise ModelError(f"{checkpoint} is a folder; give the model.pt file")
    try:
        scored, spec, config = scored_from_checkpoint(checkpoint)
        metadata = metadata_from_checkpoint(checkpoint, spec, config, threshold)
    except OSRError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # a checkpoint whose config lacks a field
        raise ModelError(f"{checkpoint}: incomplete checkpoint config ({type(exc).__name__}: {exc})") from None
    return scored, spec, metadata


def _onnx_checks(path: Path, metadata: ModelMetadata, opset: int) -> list[Check]:
    """Properties of the written file itself: single file, opset, checker, readable metadata."""
    import onnx

    from osr_export.runners import onnx_session

    checks = []
    model = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    checks.append(Check("self-contained", not external, f"{path.stat().st_size / 1024:.0f} KiB, no external data"
                        if not external else f"initializers stored outside the file: {external[:3]}"))
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    checks.append(Check("opset", version >= max(opset, DEFAULT_OPSET), f"ai.onnx opset {version} (asked for {opset})"))
    try:
        onnx.checker.check_model(str(path), full_check=True)
        checks.append(Check("onnx.checker full_check", True, "valid"))
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError and friends
        checks.append(Check("onnx.checker full_check", False, str(exc).splitlines()[0]))
    checks.append(_metadata_check(
        lambda: ModelMetadata.from_props(onnx_session(path).get_modelmeta().custom_metadata_map), metadata,
        "custom_metadata_map",
    ))
    return checks


def _metadata_check(read: Callable[[], ModelMetadata], metadata: ModelMetadata, where: str) -> Check:
    try:
        back = read()
    except Exception as exc:  # noqa: BLE001
        return Check("metadata", False, f"unreadable from {where}: {exc}")
    same = back.to_dict() == metadata.to_dict()
    detail = f"osr.* read back from {where}: threshold {back.threshold:g}, score {back.score}, input " \
             f"{back.contract.describe()}, {len(back.class_names)} classes"
    return Check("metadata", same, detail if same else f"{where} differs from what was written")


@dataclass
class ExportOptions:
    """What ``osr-export`` was asked for, validated once."""

    checkpoint: Path = DEFAULT_CHECKPOINT
    formats: tuple[str, ...] = FORMATS
    out: Path | None = None
    opset: int = DEFAULT_OPSET
    score_threshold: float | None = None
    quantize: str | None = None
    atol: float = DEFAULT_ATOL
    probe_size: int | None = 1024  # None: every probe image
    data_dir: Path | None = None
    report: Path | None = None
    int8_min_agreement: float = 0.95
    calibration_size: int = 512
    web_runtime: Path | None = None  # ONNX Runtime Web's dist folder (default: web_export.find_runtime)
    #: Providers (osr_infer.providers) the ONNX model is also run on, against the CPU provider.
    verify_providers: tuple[str, ...] = ()
    provider_options: dict[str, str] | None = None
    #: Decision flips a provider may make on the probe before the export fails.
    max_flips: int = 0

    constraints: ClassVar[dict[str, list[Constraint]]] = {
        "opset": [Interval(int, DEFAULT_OPSET, None)],
        "score_threshold": [Interval(float, None, None), NONE],
        "quantize": [OneOf(("int8",)), NONE],
        "atol": [Interval(float, 0, 1, closed="right")],
        "probe_size": [Interval(int, 1, None), NONE],
        "int8_min_agreement": [Interval(float, 0, 1)],
        "calibration_size": [Interval(int, 1, 1_000_000)],
        "max_flips": [Interval(int, 0, None)],
    }

    def __post_init__(self) -> None:
        self.checkpoint = Path(self.checkpoint)
        self.formats = tuple(self.formats)
        unknown = [f for f in self.formats if f not in ALL_FORMATS]
        if unknown or not self.formats:
            raise ParameterError("formats", f"formats: unknown format {unknown or self.formats}; choose from {', '.join(ALL_FORMATS)}")
        validate(self, self.constraints)
        self.runtime: tuple[Path, str] | None = None
        if "web" in self.formats:
            from osr_export.web_export import WebRuntimeMissing, find_runtime

            try:
                self.runtime = find_runtime(self.web_runtime)
            except WebRuntimeMissing as exc:
                raise ExportError(str(exc)) from None
        import onnx

        if self.opset > onnx.defs.onnx_opset_version():
            raise ParameterError("opset", f"opset {self.opset} is newer than this onnx package knows (up to {onnx.defs.onnx_opset_version()})")
        if self.quantize and "onnx" not in self.formats:
            raise ParameterError("quantize", "quantize int8 quantises the ONNX model: use `format` onnx or `format` all")
        self.verify_providers = tuple(self.verify_providers)
        if self.verify_providers:
            from osr_infer.providers import resolve

            for name in self.verify_providers:  # not available here: an error now, before anything is exported
                resolve(name, self.provider_options)
        elif self.provider_options:
            raise ParameterError("provider_options", "provider_options are for the providers of `verify_providers`; none was given")
        if self.report is not None and Path(self.report).is_dir():
            raise ParameterError("report", f"report {self.report} is a folder; give a file name for the JSON report")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else self.checkpoint.parent


def export(
    checkpoint: str | Path,
    formats: tuple[str, ...] | list[str] = FORMATS,
    *,
    quantize: str | None = None,
    out: str | Path | None = None,
    reporter: Reporter = SILENT,
    **options: Any,
) -> ExportReport:
    """Export ``checkpoint`` (a ``model.pt`` from `osr_train.train` or ``osr-train``) to
    ``formats`` (``onnx``, ``torchscript``, ``web``, ``triton``) in ``out`` (default: its folder), verify each
    artefact against PyTorch on a probe batch, and write them all, or none.

    ``quantize="int8"`` also writes ``model.int8.onnx``. Further ``options`` are the fields of
    `ExportOptions` (``score_threshold``, ``opset``, ``atol``, ``probe_size``, ``data_dir``,
    ``report``, ``int8_min_agreement``, ``calibration_size``, ``web_runtime``), and
    ``verify_providers`` (e.g. ``("openvino",)``: the ONNX model also run on each, with
    ``provider_options``, against the CPU provider on the probe; more than ``max_flips``
    decision flips, default 0, fail the export). Raises
    `VerificationError` when an artefact disagrees (nothing written),
    ``ModelError``, ``DataError``, ``ParameterError`` or ``ExportError`` otherwise."""
    return run_export(ExportOptions(checkpoint=Path(checkpoint), formats=tuple(formats), quantize=quantize,
                                    out=Path(out) if out is not None else None, **options),
                      reporter)


def run_export(options: ExportOptions, reporter: Reporter = SILENT) -> ExportReport:
    """Export the checkpoint to the formats, verify each against PyTorch, write them all or none."""
    scored, spec, metadata = _load(options.checkpoint, options.score_threshold)
    out_dir = options.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output folder {out_dir} is a file, not a folder")
    from osr_infer.io import check_writable_dir

    created = not out_dir.exists()
    try:
        check_writable_dir(out_dir)
    except PermissionError as exc:
        raise OutputError(str(exc)) from None
    try:
        return _probe_export_verify(scored, metadata, options, reporter)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed export leaves no trace, not even the folder it would have made
        raise


def _probe_export_verify(scored, metadata: ModelMetadata, options: ExportOptions, reporter: Reporter) -> ExportReport:  # noqa: ANN001
    from osr_infer.io import check_writable_dir

    if options.report is not None:
        try:
            check_writable_dir(Path(options.report).parent)
        except PermissionError as exc:
            raise OutputError(f"`report`: {exc}") from None

    from osr_export.probe import build_probe, calibration_images

    t0 = time.perf_counter()
    probe = build_probe(metadata.spec, options.data_dir, options.probe_size)
    calibration = calibration_images(metadata.spec, options.data_dir, options.calibration_size) if options.quantize else None
    line = f"probe: {probe.describe()}  ({time.perf_counter() - t0:.1f} s)"
    reporter.info(line) if probe.real_data else reporter.warning(line)
    for note in probe.notes:
        reporter.warning(f"probe: {note}")

    export = _Export(scored, metadata, options.checkpoint, options.out_dir, options.opset, options.atol, probe, reporter,
                     options.runtime, options.verify_providers, options.provider_options or {}, options.max_flips)
    result = export.run(options.formats, calibration, options.int8_min_agreement)
    if options.report is not None:
        from osr_infer.io import write_json

        write_json(options.report, result)
        reporter.info(f"report: {options.report}")
    report = ExportReport(bool(result["passed"]), [Path(p) for p in result["written"]], export.reports, export.int8_report, result,
                          export.provider_reports)
    if not result["passed"]:
        error = VerificationError(f"verification failed ({result['failure']}); nothing was written")
        error.report = report  # what failed, for the caller to show
        raise error
    return report


class _Abort(Exception):
    """Unwinds the ExitStack, which deletes every temporary file."""


@dataclass
class _Export:
    """One export run: the module, its metadata, the probe and PyTorch's answers on it."""

    scored: Any  # ScoredClassifier
    metadata: ModelMetadata
    checkpoint: Path
    out_dir: Path
    opset: int
    atol: float
    probe: Probe
    reporter: Reporter
    runtime: tuple[Path, str] | None = None  # for the web format: ONNX Runtime Web's folder and version
    verify_providers: tuple[str, ...] = ()
    provider_options: dict[str, str] = field(default_factory=dict)
    max_flips: int = 0

    def __post_init__(self) -> None:
        self.reports: list[FormatReport] = []
        self.int8_report: Any | None = None
        self.provider_reports: list[Any] = []  # osr_infer.provider_parity.ProviderParity
        from osr_export.runners import run_batched, torch_runner

        self.x = self.metadata.contract.normalize(np.concatenate([s.images for s in self.probe.sources]))
        bounds = np.cumsum([0] + [len(s) for s in self.probe.sources])
        self.sources = [(s.name, slice(int(a), int(b))) for s, a, b in zip(self.probe.sources, bounds[:-1], bounds[1:], strict=True)]
        self.reference = run_batched(torch_runner(self.scored), self.x, BATCH_SIZE)
        self.result: dict[str, Any] = {
            "checkpoint": str(self.checkpoint), "checkpoint_sha256": self.metadata.checkpoint_sha256,
            "threshold": self.metadata.threshold, "score": self.metadata.score, "atol": self.atol,
            "probe": self.probe.to_dict(), "formats": [], "written": [], "passed": False,
        }

    def run(self, formats: tuple[str, ...], calibration: tuple[np.ndarray, str] | None, int8_min_agreement: float) -> dict[str, Any]:
        """Export each format to a temp file, verify it, and rename them all only if all pass.

        The folder formats (web, triton) hold the verified ONNX model: asked for alone (or with
        ``verify_providers``), the ONNX model is exported and verified all the same, and only the
        folder is written."""
        web = "web" in formats
        verified = [f for f in formats if f not in FOLDER_FORMATS]
        if (any(f in FOLDER_FORMATS for f in formats) or self.verify_providers) and "onnx" not in verified:
            verified.insert(0, "onnx")
        try:
            with ExitStack() as stack:
                temps = {f: stack.enter_context(atomic_path(self.out_dir / FILENAMES[f])) for f in verified if f in formats}
                if "onnx" not in temps:  # for the web folder only
                    temps["onnx"] = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "model.onnx"
                reports = self.reports = [self._export_and_verify(fmt, temps[fmt]) for fmt in verified]
                self.result["formats"] = [r.to_dict() for r in reports]
                failed = [r.format for r in reports if not r.passed]
                if calibration is not None and not failed:
                    int8_tmp = stack.enter_context(atomic_path(self.out_dir / FILENAMES["int8"]))
                    self.result["int8"] = self._quantize(temps["onnx"], int8_tmp, calibration, int8_min_agreement)
                    if not self.result["int8"]["passed"]:
                        failed.append("int8")
                if self.verify_providers and "onnx" not in failed:
                    self.provider_reports = [self._verify_provider(temps["onnx"], name) for name in self.verify_providers]
                    self.result["providers"] = [r.to_dict() for r in self.provider_reports]
                    failed += [f"provider {name}" for name, r in zip(self.verify_providers, self.provider_reports, strict=True) if not r.passed]
                if failed:
                    self.result["failure"] = f"{', '.join(failed)} failed"
                    raise _Abort()
                if web:
                    self.result["web"] = self._web_bundle(stack, temps["onnx"])
                if "triton" in formats:
                    self.result["triton"] = self._triton_repository(stack, temps["onnx"])
                self.result["passed"] = True
                names = [FILENAMES[f] for f in formats] + ([FILENAMES["int8"]] if calibration is not None else [])
                self.result["written"] = [str(self.out_dir / n) for n in names]
        except _Abort:
            return self.result
        return self.result

    def _verify_provider(self, onnx_model: Path, name: str) -> Any:
        """The verified ONNX model on provider ``name`` against the CPU provider, on the probe."""
        from osr_infer.provider_parity import compare_provider

        with self.reporter.status(f"running the probe on provider {name}"):
            return compare_provider(onnx_model, self.x, name, self.provider_options, groups=self.sources, max_flips=self.max_flips)

    def _triton_repository(self, stack: ExitStack, onnx_model: Path) -> dict[str, Any]:
        """The Triton model repository around the verified ONNX model, renamed into place with the rest."""
        from osr_export.triton_export import MODEL_NAME, write_repository
        from osr_export.web_export import atomic_dir

        folder = stack.enter_context(atomic_dir(self.out_dir / FILENAMES["triton"]))
        try:
            files, checked = write_repository(folder, onnx_model, self.metadata)
        except ValueError as exc:
            raise ExportError(f"the Triton config does not match the model: {exc}") from None
        self.reporter.info(f"triton: {MODEL_NAME}/config.pbtxt {checked}")
        return {"files": files, "model_name": MODEL_NAME, "config_check": checked}

    def _web_bundle(self, stack: ExitStack, onnx_model: Path) -> dict[str, Any]:
        """The page folder around the verified ONNX model, renamed into place with the rest."""
        from osr_export.web_export import atomic_dir, write_bundle

        assert self.runtime is not None  # found when the options were validated
        runtime, version = self.runtime
        folder = stack.enter_context(atomic_dir(self.out_dir / FILENAMES["web"]))
        files = write_bundle(folder, onnx_model, runtime, version)
        size = sum((folder / f).stat().st_size for f in files)
        self.reporter.info(f"web: page, model.onnx and ONNX Runtime Web {version} (wasm), {size / 2**20:.1f} MiB")
        return {"files": files, "onnxruntime_web": version, "bytes": size}

    def _export_and_verify(self, fmt: str, tmp: Path) -> FormatReport:
        with self.reporter.progress(f"exporting {fmt}", total=None) as task:
            t0 = time.perf_counter()
            try:
                runner, single, checks = self._export_onnx(tmp) if fmt == "onnx" else self._export_torchscript(tmp)
            except Exception as exc:
                log.debug("export of %s failed", fmt, exc_info=True)
                report = FormatReport(fmt, self.atol, self.metadata.threshold)
                report.checks.append(Check("export", False, _one_line(exc)))
                return report
            exported = time.perf_counter() - t0
            task.update(description=f"verifying {fmt}", total=2 * len(self.x), completed=0)
            report = verify_format(
                fmt, runner=runner, runner_single=single, reference=self.reference, x=self.x, sources=self.sources,
                threshold=self.metadata.threshold, atol=self.atol, batch_size=BATCH_SIZE,
                n_classes=len(self.metadata.class_names), advance=task.advance, extra_checks=checks,
            )
        report.checks.insert(0, Check("export", True, f"exported in {exported:.1f} s, verified in {time.perf_counter() - t0 - exported:.1f} s"))
        return report

    def _export_onnx(self, tmp: Path) -> tuple[Runner, Runner, list[Check]]:
        from osr_export import onnx_export
        from osr_export.runners import onnx_runner

        model = onnx_export.to_onnx_model(self.scored, self.metadata, self.opset)
        onnx_export.save_onnx(model, tmp)
        checks = _onnx_checks(tmp, self.metadata, self.opset)
        return onnx_runner(tmp), onnx_runner(tmp, threads=1), checks

    def _export_torchscript(self, tmp: Path) -> tuple[Runner, Runner, list[Check]]:
        from osr_export import torchscript_export
        from osr_export.runners import torch_runner, torch_threads

        module = torchscript_export.to_torchscript(self.scored, self.metadata)
        torchscript_export.save_torchscript(module, self.metadata, tmp)
        loaded, _ = torchscript_export.load_torchscript(tmp)  # what a deployment loads, not the traced object
        runner = torch_runner(loaded)

        def single(batch: np.ndarray) -> ModelOutputs:
            with torch_threads(1):
                return runner(batch)

        where = f"the osr.json extra file of {FILENAMES['torchscript']}"
        check = _metadata_check(lambda: torchscript_export.load_torchscript(tmp)[1], self.metadata, where)
        return runner, single, [check]

    def _quantize(self, fp32_path: Path, tmp: Path, calibration: tuple[np.ndarray, str], min_agreement: float) -> dict[str, Any]:
        from osr_export.quantize import QuantizationError, int8_report, quantize_int8
        from osr_export.runners import onnx_runner, onnx_session, run_batched

        images, name = calibration
        t0 = time.perf_counter()
        try:
            with self.reporter.status(f"quantising to INT8 (calibration: {name})"):
                record = quantize_int8(fp32_path, tmp, self.metadata.contract.normalize(images), self.metadata, name)
            fp32 = run_batched(onnx_runner(fp32_path), self.x, BATCH_SIZE)
            int8 = run_batched(onnx_runner(tmp), self.x, BATCH_SIZE)
            back = ModelMetadata.from_props(onnx_session(tmp).get_modelmeta().custom_metadata_map)
        except (QuantizationError, MetadataError) as exc:
            return {"passed": False, "summary": f"FAIL int8: {exc}"}
        labelled = [(s.name, s.role, part, s.labels) for s, (_, part) in zip(self.probe.sources, self.sources, strict=True)]
        report = int8_report(fp32, int8, labelled, self.metadata.threshold, min_agreement)
        report.size_fp32, report.size_int8 = fp32_path.stat().st_size, tmp.stat().st_size
        self.int8_report = report
        self.reporter.info(
            f"  int8: {record['format']}, weights {record['weights']}, calibration {record['calibration']}; "
            f"kept in float: {', '.join(record['float_nodes'])}; metadata read back with osr.quantization: "
            f"{back.quantization is not None} ({time.perf_counter() - t0:.1f} s)"
        )
        return {**report.to_dict(), "quantization": record}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ = ["ALL_FORMATS", "DEFAULT_CHECKPOINT", "ExportOptions", "ExportReport", "FILENAMES", "FORMATS", "export", "run_export"]
