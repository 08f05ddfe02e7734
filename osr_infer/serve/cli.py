"""``osr-serve``: the model as an HTTP service (the Open Inference Protocol, ``/predict``, ``/metrics``)."""

from __future__ import annotations

import time
from typing import Optional

import typer
from rich.console import Console

from osr_infer import cli_support

app = typer.Typer(add_completion=False, rich_markup_mode=None,
                  help="Serve a model over HTTP: the Open Inference Protocol (KServe v2), /predict for image files, /metrics.")
console = Console(stderr=True, emoji=False, highlight=False)
FLAGS = {**cli_support.THRESHOLD_FLAGS, "provider_options": "--provider-option", "max_delay_ms": "--max-delay-ms",
         "max_body_bytes": "--max-body-mb", "max_queue_bytes": "--max-queue-mb", "timeout_s": "--timeout"}
INSTALL = "osr-serve needs the serve extra: pip install 'osr-toolkit[serve]'"


@app.command()
def serve(
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="The ONNX model (a path or URL) [default: artifacts/siamese/model.onnx where it exists, "
        "else the model shipped with osr-toolkit].", show_default=False,
    ),
    name: str = typer.Option("osr", "--name", help="The model's name in the protocol's URLs (/v2/models/NAME/infer)."),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="The port to listen on (0: a free one, printed)."),
    max_batch: int = typer.Option(64, "--max-batch", help="Images per model call: requests waiting together are batched."),
    max_delay_ms: float = typer.Option(1.0, "--max-delay-ms", help="How long a batch that is not full waits for more requests."),
    max_queue: int = typer.Option(2048, "--max-queue", help="Images accepted and not yet answered; beyond it, 503 with Retry-After."),
    max_queue_mb: float = typer.Option(256.0, "--max-queue-mb", help="The memory the queued images may hold, in MiB; beyond "
                                       "it, 503 with Retry-After."),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", help="The largest request body, in MiB (larger: 413)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds from a request's arrival to its answer (408 for a slow body, 504)."),
    decode_workers: Optional[int] = typer.Option(None, "--decode-workers", help="Processes that decode /predict's images "
                                                 "[default: 1 where there are 2 cores or more, else 0: the batch thread].",
                                                 show_default=False),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime's threads [default: the cores but one].",
                                          show_default=False),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Decide on the top softmax probability at this threshold "
                                              "[default: the model's own score and threshold].",
                                              show_default=False),
    score_threshold: Optional[float] = typer.Option(None, "--score-threshold", help="Decide on the model's score at this threshold "
                                                    "[default: the model's own].", show_default=False),
    provider: str = typer.Option("cpu", "--provider", help="Where the model runs: cpu, cuda, tensorrt, openvino, coreml, auto."),
    provider_option: Optional[list[str]] = typer.Option(None, "--provider-option", metavar="KEY=VALUE",
                                                        help="An option of --provider's runtime (repeatable) [default: the "
                                                        "provider's own; openvino: INFERENCE_PRECISION_HINT=f32].", show_default=False),
) -> None:
    """Serve MODEL until SIGTERM or Ctrl-C, then finish every request in flight and exit 0.

    Endpoints: GET /v2/health/live, /v2/health/ready, /v2/models/NAME (inputs, outputs, the osr.* metadata);
    POST /v2/models/NAME/infer (normalised FP32 tensors in; logits, probs, score, class_index, label, known out);
    POST /predict (image bytes, or multipart files: one JSON row per image, as osr-infer writes them); GET /metrics.
    Exit codes: 0 stopped, 2 bad option, model or port.
    """
    import os

    from osr_infer.model import Model
    from osr_infer.providers import parse_options
    from osr_infer.serve.app import ServeConfig, create_app
    from osr_infer.serve.server import run

    with cli_support.library_errors(console, FLAGS):
        config = ServeConfig(name=name, max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue,
                             max_queue_bytes=int(max_queue_mb * 2**20), max_body_bytes=int(max_body_mb * 2**20), timeout_s=timeout,
                             decode_workers=decode_workers)
        from osr_infer.cli import resolve_model_path

        loaded = Model.load(resolve_model_path(model), threshold=threshold, score_threshold=score_threshold,
                            threads=threads or max(1, (os.cpu_count() or 2) - 1), spin=False, provider=provider,
                            provider_options=parse_options(list(provider_option or [])))
        service = create_app(loaded, config)
        console.print(f"model: {loaded.describe(FLAGS)}", markup=False, soft_wrap=True)
        console.print(f"provider: {loaded.provider.describe()}", markup=False, soft_wrap=True)
        console.print(f"sha256: {service.sha256}", markup=False, soft_wrap=True)
        for note in loaded.notes:
            console.print(f"note: {cli_support.with_flags(note, FLAGS)}", markup=False, soft_wrap=True)
        started = time.perf_counter()

        def listening(url: str) -> None:
            console.print(f"serving {config.name} at {url} (max batch {config.max_batch}, max delay {config.max_delay_ms:g} ms, "
                          f"queue {config.max_queue} images): {url}/v2/models/{config.name}/infer, {url}/predict, {url}/metrics",
                          markup=False, soft_wrap=True)

        def stopping() -> None:
            console.print("stopping: finishing the requests in flight", markup=False, soft_wrap=True)

        run(service, host, port, on_listening=listening, on_stopping=stopping)
    console.print(f"stopped after {time.perf_counter() - started:.0f} s: {service.served:,} requests answered", markup=False, soft_wrap=True)


def main() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from rich.markup import escape

        console.print(f"[bold red]error:[/] {escape(INSTALL)}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    app()


if __name__ == "__main__":
    main()
