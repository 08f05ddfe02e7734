"""The download path, against a local HTTP server on 127.0.0.1 that the test starts."""

import functools
import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from conftest import write_fake_mnist
from osr_infer.data import load_mnist
from osr_infer.data.mnist import MNIST_RESOURCES, MnistMissingError, download_mnist


@pytest.fixture
def mirror(tmp_path):
    """Serve a tiny MNIST's .gz files; yields (base URL, {stem: md5}, served folder)."""
    served = write_fake_mnist(tmp_path / "served") / "MNIST" / "raw"
    md5s = {stem: hashlib.md5((served / f"{stem}.gz").read_bytes()).hexdigest() for stem in MNIST_RESOURCES}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", md5s, served
    server.shutdown()
    server.server_close()


def test_download_verifies_and_loads(tmp_path, mirror):
    url, md5s, _ = mirror
    dest = tmp_path / "data"
    download_mnist(dest, mirrors=("http://127.0.0.1:9/unreachable/", url), resources=md5s, timeout=5)
    raw = dest / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{s}.gz" for s in MNIST_RESOURCES)
    train = load_mnist(dest, "train")
    assert train.images.shape == (120, 28, 28) and train.labels.tolist() == [i % 10 for i in range(120)]
    assert train.class_names == tuple(str(d) for d in range(10)) and train.name == "mnist-train"


def test_checksum_mismatch_leaves_nothing_behind(tmp_path, mirror):
    url, md5s, served = mirror
    path = served / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(np.zeros(40, np.uint8).tobytes()))  # tampered file
    dest = tmp_path / "data"
    with pytest.raises(MnistMissingError, match="checksum mismatch"):
        download_mnist(dest, mirrors=(url,), resources=md5s, timeout=5)
    raw = dest / "MNIST" / "raw"
    assert not (raw / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list(raw.glob(".*part"))  # no temp file left


def test_offline_failure_is_one_clear_message(tmp_path):
    with pytest.raises(MnistMissingError, match="could not download .*`dataset` digits"):
        download_mnist(tmp_path, mirrors=("http://127.0.0.1:9/",), timeout=2)


def test_an_endless_download_is_cut_off_and_leaves_nothing(tmp_path, monkeypatch):
    """A mirror that streams forever (or a wrong, huge file) stops at the size cap, not at a full disk."""
    import osr_infer.data.mnist as mnist

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(bytes(1 << 16))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    monkeypatch.setattr(mnist, "MAX_DOWNLOAD_BYTES", 2 << 20)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "data"
        with pytest.raises(MnistMissingError, match="more than 2,097,152 bytes"):
            download_mnist(dest, mirrors=(f"http://127.0.0.1:{server.server_address[1]}/",), timeout=5)
        assert not list((dest / "MNIST" / "raw").iterdir())  # no partial file
    finally:
        server.shutdown()
        server.server_close()
