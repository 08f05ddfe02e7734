"""The straightforward model service a user would write, for comparison with ``osr-serve``.

    python benchmarks/straightforward_service.py MODEL PORT

FastAPI on uvicorn (one process, its default), the integration guide's snippet
(docs/integration.md: PIL decoding and the model's contract, ONNX Runtime's session): one
image per request, decoded and classified in the request, no batching. ``serve_throughput.py``
puts the same client load on it and on ``osr-serve`` in the same run.
"""

import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from straightforward_pipeline import snippet  # noqa: E402 - the benchmarks folder is not a package


def build_app(model: Path):  # noqa: ANN201 - a FastAPI application
    from fastapi import FastAPI, Request  # (FastAPI reads the annotations: this module has no `from __future__ import annotations`)

    exec(snippet(model), globals())  # noqa: S102 - the integration guide's code, as a user's service would paste it
    classify = globals()["classify"]
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> list[dict]:
        labels, score = classify([io.BytesIO(await request.body())])
        return [{"label": labels[0], "score": float(score[0]), "known": labels[0] != "unknown"}]

    return app


def main() -> None:
    import uvicorn

    model, port = Path(sys.argv[1]), int(sys.argv[2])
    uvicorn.run(build_app(model), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
