"""What the speed benchmarks share: the arguments and export of those that time an exported model,
and the end-to-end run of the inference pipeline with its knobs set."""

from __future__ import annotations

import argparse
import os
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
                    chunk_files: int | None = None, batch_size: int = 256) -> int:
    """What ``osr-infer FOLDER --output OUT`` runs, assembled from the library's pieces so that a
    benchmark can set what the command chooses itself (ONNX Runtime threads and the pool's
    chunk): the session, the decode pool, the streaming classifier and the results writer. The
    number of rows written."""
    from osr_infer.decode import CHUNK_FILES, DecodePool
    from osr_infer.model import Model
    from osr_infer.pipeline import run_inference
    from osr_infer.results import ResultsWriter
    from osr_infer.sources import resolve_sources

    m = Model.load(model, threads=threads, spin=False if workers else None)
    sources = resolve_sources([str(folder)], [], None, m.contract, m.spec, m.classes)
    with DecodePool(m.contract, workers, chunk_files=chunk_files or CHUNK_FILES) as pool, ResultsWriter(out) as writer:
        run = run_inference(sources, m.session, pool, batch_size=batch_size, writer=writer)
    return int(run.output_rows or 0)
