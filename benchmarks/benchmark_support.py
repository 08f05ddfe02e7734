"""What benchmarks share: the arguments and export of those that time an exported model, a quiet
``osr-infer`` run read back, and the writing of a README table with its raw figures."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def exported_model_arguments(doc: str, output_name: str) -> argparse.Namespace:
    """``[CHECKPOINT] [--data-dir] [--rounds] [--output]`` with the defaults every such benchmark uses."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, nargs="?", default=Path("artifacts/siamese/model.pt"))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=HERE / "results" / output_name)
    return parser.parse_args()


def export_everything(checkpoint: Path, out: Path, data_dir: Path) -> None:
    """``osr-export CHECKPOINT --format all --quantize int8`` into ``out``, through the Python API (silent)."""
    from osr_export import export
    from osr_export.cli import _quiet_exporter_logs

    _quiet_exporter_logs()
    export(checkpoint, ("onnx", "torchscript"), out=out, quantize="int8", probe_size=256, data_dir=data_dir)


def end_to_end_with(folder: Path, model: Path, workers: int, out: Path, *, threads: int | None = None,
                    chunk_files: int | None = None, kind: str = "process", batch_size: int = 256) -> int:
    """What ``osr-infer FOLDER --output OUT`` runs, assembled from the library's pieces so that a
    benchmark can set what the command chooses itself (ONNX Runtime threads, the pool's kind and
    chunk): the session, the decode pool, the streaming classifier and the results writer. The
    number of rows written."""
    from osr_infer.decode import CHUNK_FILES, DecodePool
    from osr_infer.model import Model
    from osr_infer.pipeline import run_inference
    from osr_infer.results import ResultsWriter
    from osr_infer.sources import resolve_sources

    m = Model.load(model, threads=threads, spin=False if workers else None)
    sources = resolve_sources([str(folder)], [], None, m.contract, m.spec, m.classes)
    with DecodePool(m.contract, workers, kind=kind, chunk_files=chunk_files or CHUNK_FILES) as pool, ResultsWriter(out) as writer:
        run = run_inference(sources, m.session, pool, batch_size=batch_size, writer=writer)
    return int(run.output_rows or 0)


def infer_rows(inputs: list[Path], model: Path, **options: object) -> tuple[int, list[dict]]:
    """``osr-infer INPUTS --model MODEL`` (the same code path, no progress bar) into a temporary results
    file, read back: its exit status and one row per image. ``options``: more ``InferOptions`` fields."""
    from osr_infer.cli import InferOptions, infer_command
    from osr_infer.results import read_results

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.csv"
        status = infer_command(InferOptions([str(p) for p in inputs], model=model, output=out, progress=False, **options))
        return status, read_results(out)


def write_table(output: Path, rows: list[dict], markdown: str) -> None:
    """``output``.json (the raw figures) and ``output``.md (the README table), and the table printed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)
