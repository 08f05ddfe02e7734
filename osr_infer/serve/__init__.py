"""``osr-serve``: the model as an HTTP service (extra ``[serve]``: Starlette on uvicorn).

It speaks the Open Inference Protocol (KServe v2), so ``tritonclient.http`` and other
clients of Triton, KServe or MLServer work unchanged, and takes image files at ``/predict``,
where the model's preprocessing contract is applied server-side::

    from osr_infer import Model
    from osr_infer.serve import ServeConfig, create_app, run

    service = create_app(Model.load("model.onnx"), ServeConfig(max_batch=64))
    run(service, "127.0.0.1", 8000)          # or: uvicorn with service.app

* `create_app`, `Service`, `ServeConfig`: the ASGI application and its limits;
* `run`: uvicorn on a bound socket, graceful on SIGTERM.
"""

from __future__ import annotations

from osr_infer.lazy import lazy_exports

_WHERE = {"ServeConfig": "app", "Service": "app", "create_app": "app", "run": "server"}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
