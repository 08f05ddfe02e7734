"""Where the model runs: ONNX Runtime's execution providers, by short name, as one registry.

``cpu``, ``cuda``, ``tensorrt``, ``coreml``, ``dnnl``... each name is one entry of `PROVIDERS`
(its ONNX Runtime provider, and what to install for it). ``auto`` takes the first available of
`AUTO_ORDER`. Strict: a provider that is not available, or that ONNX Runtime could not start
(it silently falls back to the CPU), is a `ParameterError` naming ``provider``, never a silent
CPU run; `ResolvedProvider.describe` says which provider runs, for every run to print. Options the
provider does not know (ONNX Runtime ignores them) are an error too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from osr_infer.errors import ParameterError


@dataclass(frozen=True)
class Provider:
    """One execution provider: ONNX Runtime's name for it, and what makes it available."""

    ort_name: str
    install: str
    #: Provider options set unless the user gives them.
    defaults: dict[str, str] = field(default_factory=dict)
    #: Which library runs the model: ONNX Runtime, or OpenVINO's own runtime (`OpenVinoRunner`).
    runtime: str = "onnxruntime"
    #: Options that depend on the model file (TensorRT's engine cache folder), set unless given.
    model_defaults: Callable[[Path, dict[str, str]], dict[str, str]] | None = None


def cache_root() -> Path:
    """The toolkit's cache folder: ``$XDG_CACHE_HOME/osr-toolkit`` (``~/.cache/osr-toolkit``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "osr-toolkit"


def tensorrt_version() -> str:
    """TensorRT's version (its Python package, else ``getInferLibVersion`` of libnvinfer), or ``unknown``."""
    try:
        import tensorrt  # type: ignore[import-not-found]

        return str(tensorrt.__version__)
    except ImportError:
        pass
    import ctypes

    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer.dll"):
        try:
            number = int(ctypes.CDLL(name).getInferLibVersion())
        except (OSError, AttributeError):
            continue
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}" if number >= 10000 else f"{number // 1000}.{number // 100 % 10}.{number % 100}"
    return "unknown"


def gpu_identity(device_id: int) -> str:
    """The GPU an engine is built for: its name and UUID from ``nvidia-smi`` (an engine is
    specific to one device model), or ``gpuN`` where nvidia-smi is absent."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            done = subprocess.run([smi, "--query-gpu=name,uuid", "--format=csv,noheader", "-i", str(device_id)],
                                  capture_output=True, text=True, timeout=10, check=True)
            name, _, uuid = done.stdout.strip().partition(", ")
            if name:
                return f"{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}-{uuid.strip()[:12]}"
        except (OSError, subprocess.SubprocessError):
            pass
    return f"gpu{device_id}"


def tensorrt_cache(model: Path, options: dict[str, str]) -> dict[str, str]:
    """TensorRT's engine cache, on by default, in a folder of its own for this model file (its
    SHA-256), this ONNX Runtime, this TensorRT and this GPU: an engine built for another of any
    of them is never loaded (TensorRT would reject it, or worse, run it). FP16 stays off unless
    asked (``trt_fp16_enable=True``), since reduced precision can change decisions."""
    import onnxruntime as ort

    from osr_infer.io import file_sha256

    digest = file_sha256(model)[:16]
    device = gpu_identity(int(options.get("device_id", "0") or 0))
    key = f"{digest}-ort{ort.__version__}-trt{tensorrt_version()}-{device}"
    folder = cache_root() / "tensorrt" / key
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(folder),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(folder)}


PROVIDERS: dict[str, Provider] = {
    "cpu": Provider("CPUExecutionProvider", "onnxruntime (installed)"),
    "cuda": Provider("CUDAExecutionProvider", "onnxruntime-gpu in place of onnxruntime, and an NVIDIA driver"),
    "tensorrt": Provider("TensorrtExecutionProvider", "onnxruntime-gpu with TensorRT's libraries, and an NVIDIA GPU",
                         {"trt_fp16_enable": "False", "trt_int8_enable": "False"}, model_defaults=tensorrt_cache),
    "coreml": Provider("CoreMLExecutionProvider", "macOS with onnxruntime (its wheels include CoreML)"),
    "dnnl": Provider("DnnlExecutionProvider", "an onnxruntime build with oneDNN"),
    "rocm": Provider("ROCMExecutionProvider", "onnxruntime-rocm and an AMD GPU"),
    # The openvino package reads the ONNX file itself and installs beside onnxruntime, where
    # onnxruntime-openvino would replace the onnxruntime module. f32 by default: its CPU plugin
    # otherwise runs bf16 where the CPU has it, which flipped 14 of 10,000 decisions here.
    "openvino": Provider("OpenVINO", "pip install 'osr-toolkit[openvino]' (Intel's openvino runtime)",
                         {"INFERENCE_PRECISION_HINT": "f32"}, runtime="openvino"),
}
#: Precisions that can change decisions: asked for, they come with a note saying so.
REDUCED_PRECISIONS = ("bf16", "bfloat16", "f16", "float16")
#: Provider options that turn reduced precision on when "True" (TensorRT's FP16 and INT8).
REDUCED_PRECISION_SWITCHES = ("trt_fp16_enable", "trt_int8_enable")
#: ``auto``: the fastest available first.
AUTO_ORDER = ("tensorrt", "cuda", "coreml", "dnnl", "openvino", "cpu")


@dataclass(frozen=True)
class ResolvedProvider:
    """A provider the session will run on, with its options, and how it was chosen."""

    name: str
    options: dict[str, str]
    automatic: bool = False

    @property
    def ort_name(self) -> str:
        return PROVIDERS[self.name].ort_name

    @property
    def runtime(self) -> str:
        return PROVIDERS[self.name].runtime

    def session_providers(self) -> list[Any]:
        """``providers=`` for ``ort.InferenceSession``: this one, with the CPU behind it only for
        the operators it lacks (ONNX Runtime places each node on the first provider that has it)."""
        if self.runtime != "onnxruntime":  # ONNX Runtime only reads the model's metadata and outputs then
            return ["CPUExecutionProvider"]
        chosen: list[Any] = [(self.ort_name, dict(self.options))]
        return chosen if self.name == "cpu" else [*chosen, "CPUExecutionProvider"]

    def for_model(self, model: Path) -> "ResolvedProvider":
        """These options with the ones that depend on ``model`` (TensorRT's engine cache) added,
        where the user did not give them."""
        derive = PROVIDERS[self.name].model_defaults
        if derive is None:
            return self
        return replace(self, options={**derive(model, self.options), **self.options})

    def reduced_precision(self) -> str | None:
        """The reduced precision these options ask for (``bf16``, ``trt_fp16_enable``...), or None."""
        hint = self.options.get("INFERENCE_PRECISION_HINT", "").lower()
        if hint in REDUCED_PRECISIONS:
            return hint
        switched = [k for k in REDUCED_PRECISION_SWITCHES if self.options.get(k, "").lower() in ("true", "1")]
        return switched[0] if switched else None

    def describe(self) -> str:
        how = " (auto: the best available here)" if self.automatic else ""
        options = f" with {', '.join(f'{k}={v}' for k, v in sorted(self.options.items()))}" if self.options else ""
        return f"{self.name}{how}{options}"


def available() -> list[str]:
    """The registry's providers this ONNX Runtime offers, by short name."""
    import importlib.util

    import onnxruntime as ort

    offered = set(ort.get_available_providers())
    return [name for name, provider in PROVIDERS.items()
            if provider.ort_name in offered or (provider.runtime == "openvino" and importlib.util.find_spec("openvino") is not None)]


def resolve(provider: str = "cpu", options: dict[str, str] | None = None) -> ResolvedProvider:
    """``provider`` (a name of `PROVIDERS`, or ``auto``) checked against what is available, with
    ``options`` (ONNX Runtime's provider options, as strings)."""
    options = dict(options or {})
    if not isinstance(provider, str) or (provider != "auto" and provider not in PROVIDERS):
        raise ParameterError("provider", f"provider must be auto or one of {', '.join(PROVIDERS)}, not {provider!r}")
    here = available()
    if provider == "auto":
        name = next(n for n in AUTO_ORDER if n in here)
        return ResolvedProvider(name, {**PROVIDERS[name].defaults, **options}, automatic=True)
    if provider not in here:
        raise ParameterError("provider", f"provider {provider} is not available here (this ONNX Runtime offers "
                             f"{', '.join(here)}): it needs {PROVIDERS[provider].install}")
    return ResolvedProvider(provider, {**PROVIDERS[provider].defaults, **options})


def check_started(session: Any, resolved: ResolvedProvider, path: str) -> None:
    """Fail where ONNX Runtime put the model on another provider than the one asked for (it
    falls back to the CPU when a provider cannot start, with a warning nobody reads)."""
    running = session.get_providers()
    if not running or running[0] != resolved.ort_name:
        raise ParameterError("provider", f"{path}: ONNX Runtime could not start provider {resolved.name} (it runs on "
                             f"{', '.join(running) or 'nothing'}): check {PROVIDERS[resolved.name].install}")
    known = session.get_provider_options().get(resolved.ort_name, {})
    unknown = sorted(set(resolved.options) - set(known))
    if unknown:  # ONNX Runtime ignores what it does not know: say so instead
        takes = f"its options: {', '.join(sorted(known))}" if known else "it takes none"
        raise ParameterError("provider_options", f"provider_options {', '.join(unknown)} are not options of provider {resolved.name} ({takes})")


def parse_options(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (``--provider-option``) as a dict; a ParameterError naming ``provider_options`` otherwise."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError("provider_options", f"provider_options are KEY=VALUE, not {item!r}")
        options[key.strip()] = value.strip()
    return options


class OpenVinoRunner:
    """The model compiled by OpenVINO for its CPU device, with the provider's options as its
    configuration (``INFERENCE_PRECISION_HINT`` f32 unless asked otherwise): what
    `osr_infer.session.InferenceModel.run` calls instead of ONNX Runtime."""

    def __init__(self, path: str, resolved: ResolvedProvider, threads: int, output_names: list[str]) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, **resolved.options}
        try:
            self._compiled = core.compile_model(core.read_model(path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            # OpenVINO's message is a stack of "Exception from FILE:LINE:" lines above the reason
            lines = [line for line in str(exc).strip().splitlines() if line.strip() and not line.startswith("Exception from ")]
            reason = lines[-1] if lines else type(exc).__name__
            raise ParameterError("provider_options", f"{path}: OpenVINO could not compile the model with {config} ({reason})") from None
        self._requests = threading.local()  # an infer request is not thread-safe: one per calling thread (osr-serve runs two)
        self._outputs = [self._compiled.output(name) for name in output_names]
        #: The precision it runs in: ``float32``, ``bfloat16`` (OpenVINO says ``<Type: 'bfloat16'>``).
        hint = str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        named = re.search(r"'(\w+)'", hint)
        self.precision = (named.group(1) if named else hint).lower()

    def run(self, input_name: str, x: Any) -> list[Any]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        result = request.infer({input_name: x})
        return [result[output].copy() for output in self._outputs]
