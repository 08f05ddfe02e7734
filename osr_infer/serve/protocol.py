"""The Open Inference Protocol (KServe v2) over HTTP/REST: its JSON, and the binary tensor extension.

A request is JSON (``inputs``: name, shape, datatype, data), or, with an
``Inference-Header-Content-Length`` header, that much JSON followed by the raw bytes of the
inputs that say ``binary_data_size`` (what ``tritonclient.http`` sends by default). A response
is built the same way: outputs asked for with ``binary_data`` (or all of them with the request
parameter ``binary_data_output``) travel as raw bytes after the JSON.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "inference-header-content-length"
#: Protocol datatypes and their numpy types (BYTES: length-prefixed strings).
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


class ProtocolError(Exception):
    """A request the protocol cannot read: the server answers 400 with this one line."""


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    #: The outputs asked for, each with whether it goes as binary; None: all of them.
    outputs: list[tuple[str, bool]] | None
    binary_default: bool
    parameters: dict[str, Any]


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise ProtocolError(f"{where}: shape must be a list of non-negative integers, not {value!r}")
    return value


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"{where}: parameters must be an object")
    return parameters


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request's JSON and its binary inputs, as numpy arrays of their shapes."""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length must be an integer, not {header_length!r}") from None
        if not 0 < size <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {size} does not fit a body of {len(body)} bytes")
        head, binary = body[:size], memoryview(body)[size:]
    else:
        head, binary = body, memoryview(b"")
    try:
        request = json.loads(head)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"the request is not JSON ({exc})") from None
    except RecursionError:
        raise ProtocolError("the request's JSON is nested too deeply") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise ProtocolError("the request must be a JSON object with a non-empty `inputs` list")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("`parameters` must be an object")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for k, item in enumerate(request["inputs"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(f"inputs[{k}] must be an object with a `name`")
        name, where = item["name"], f"input {item['name']!r}"
        shape = _shape(item.get("shape"), where)
        datatype = item.get("datatype")
        if datatype not in DATATYPES:
            raise ProtocolError(f"{where}: datatype must be one of {', '.join(DATATYPES)}, not {datatype!r}")
        if datatype == "BYTES":
            raise ProtocolError(f"{where}: BYTES inputs are not taken (send FP32 tensors; /predict takes image files)")
        count = int(np.prod(shape)) if shape else 1
        binary_size = _parameters(item, where).get("binary_data_size")
        if binary_size is not None:
            expected = count * np.dtype(DATATYPES[datatype]).itemsize
            if binary_size != expected or offset + expected > len(binary):
                raise ProtocolError(f"{where}: binary_data_size {binary_size} does not match its shape {shape} of {datatype} "
                                    f"({expected} bytes) and the {len(binary) - offset} bytes left in the body")
            array = np.frombuffer(binary[offset:offset + expected], dtype=DATATYPES[datatype]).reshape(shape)
            offset += expected
        else:
            try:
                array = np.asarray(item.get("data"), dtype=DATATYPES[datatype])
            except (TypeError, ValueError, OverflowError, RecursionError):
                raise ProtocolError(f"{where}: data must be numbers of {datatype}") from None
            if array.size != count:
                raise ProtocolError(f"{where}: {array.size} values do not fill its shape {shape}")
            array = array.reshape(shape)
        inputs[name] = array
    outputs = None
    if request.get("outputs") is not None:
        if not isinstance(request["outputs"], list):
            raise ProtocolError("`outputs` must be a list")
        outputs = []
        for k, item in enumerate(request["outputs"]):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ProtocolError(f"outputs[{k}] must be an object with a `name`")
            outputs.append((item["name"], bool(_parameters(item, f"output {item['name']!r}").get("binary_data", False))))
    request_id = request.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, inputs, outputs,
                        bool(parameters.get("binary_data_output", False)), parameters)


def _bytes_tensor(values: np.ndarray) -> bytes:
    """BYTES elements as the binary extension sends them: a 4-byte little-endian length, then the bytes."""
    out = bytearray()
    for value in values.ravel().tolist():
        data = value if isinstance(value, bytes) else str(value).encode()
        out += struct.pack("<I", len(data)) + data
    return bytes(out)


def encode_response(outputs: list[tuple[str, str, np.ndarray, bool]], header: dict[str, Any]) -> tuple[bytes, int | None]:
    """The response body for ``outputs`` (name, datatype, array, binary?) under ``header`` (model
    name, version, id, parameters); and the JSON's length when binary data follows it."""
    tensors, binary = [], []
    for name, datatype, array, as_binary in outputs:
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if as_binary:
            data = _bytes_tensor(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            binary.append(data)
        else:
            tensor["data"] = [str(v) for v in array.ravel().tolist()] if datatype == "BYTES" else array.ravel().tolist()
        tensors.append(tensor)
    head = json.dumps({**header, "outputs": tensors}, separators=(",", ":")).encode()
    if not binary:
        return head, None
    return head + b"".join(binary), len(head)
