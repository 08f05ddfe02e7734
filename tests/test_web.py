"""``osr-export --format web`` in a real browser: Debian's Chromium, headless, driven by Selenium.

The page decodes and preprocesses each image with the contract's JavaScript port and runs the
model with ONNX Runtime Web (wasm). On MNIST PNGs, CIFAR-10 JPEGs, realistic photos of digits and
letters (make_realistic.py) and odd files (transparency, EXIF orientation, palette, 16-bit), it
must give Python's pixels exactly, scores within 1e-5 and osr-infer's decisions. The one
documented exception is a JPEG that PIL decodes in draft mode (DCT-scaled), which a browser
cannot do: those are approximated, counted apart and held to decision agreement only.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import REPO, missing, shared_data_dir
from export_testing import cifar_like_rgb, run_export
from infer_testing import digit_images, write_pngs
from osr_infer.io import current_umask
from osr_infer.metadata import ModelMetadata
from osr_infer.preprocess import load_image
from osr_train.checkpoint import load_checkpoint, save_checkpoint
from web_testing import classify_in_page, open_page, require_browser, serve, start_browser

pytestmark = pytest.mark.slow

SCORE_ATOL = 1e-5


def _odd_files(folder: Path) -> None:
    """Files that exercise the decoder: transparency, EXIF orientation, palette, 16-bit grey."""
    folder.mkdir(parents=True)
    ink = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    ImageDraw.Draw(ink).ellipse([30, 10, 90, 80], outline=(15, 15, 90, 255), width=9)  # antialiased? no: hard edges
    ink.save(folder / "zero-transparent.png")
    soft = ink.resize((300, 225), Image.Resampling.BICUBIC)  # half-transparent edges
    soft.save(folder / "zero-transparent-soft.png")
    page = Image.new("RGB", (200, 150), (235, 230, 215))
    ImageDraw.Draw(page).line([(70, 30), (130, 30), (85, 125)], fill=(25, 25, 30), width=12)
    for orientation, turn in ((3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
        stored = page.transpose(turn)
        exif = stored.getexif()
        exif[0x0112] = orientation
        stored.save(folder / f"seven-exif{orientation}.jpg", exif=exif, quality=90)
    page.convert("L").save(folder / "seven-grey.jpg", quality=90)
    page.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "seven-palette.png")
    grey16 = (np.asarray(page.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "seven-16bit.png")
    Image.new("L", (64, 48), 200).save(folder / "blank.png")


def _parity_folder(root: Path) -> Path:
    """MNIST test PNGs, CIFAR-10 JPEGs (the original files) and realistic photos when the real data
    is present, stand-ins written here otherwise, and the odd files."""
    data = shared_data_dir()
    real = (data / "MNIST" / "raw").is_dir() and (data / "cifar10-test-jpeg").is_dir()
    if not real and os.environ.get("CI") == "true":
        missing(f"MNIST and the CIFAR-10 test JPEGs are not under {data}: the page's parity is checked on real files")
    (root / "digits").mkdir(parents=True)
    (root / "photos").mkdir()
    rng = np.random.default_rng(3)
    if real:
        from osr_infer.data.mnist import load_mnist

        test = load_mnist(data, "test")
        for i in rng.choice(len(test.images), 100, replace=False):
            Image.fromarray(test.images[i]).save(root / "digits" / f"mnist-{i:05d}.png")
        jpegs = sorted((data / "cifar10-test-jpeg").rglob("*.jpg"))
        for k, i in enumerate(rng.choice(len(jpegs), 100, replace=False)):
            shutil.copyfile(jpegs[i], root / "photos" / f"cifar-{k:03d}.jpg")
    else:
        for i, image in enumerate(digit_images(100, seed=4)[0]):
            Image.fromarray(image).save(root / "digits" / f"digit-{i:03d}.png")
        for i, rgb in enumerate(cifar_like_rgb(100, seed=4)):
            Image.fromarray(rgb).save(root / "photos" / f"photo-{i:03d}.jpg", quality=90)
    command = [sys.executable, str(REPO / "tools" / "make_realistic.py"), str(root / "realistic"), "--n-digits", "60",
               "--n-letters", "20", "--seed", "11", "--jobs", "2", "--huge-share", "0.05", "--data-dir", str(data)]
    if not real:
        command += ["--handwritten-share", "0"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (root / "realistic" / "manifest.json").unlink()
    _odd_files(root / "odd")
    return root


@pytest.fixture(scope="module")
def web_site(tmp_path_factory, trained_digits):
    """A folder served over HTTP: web/ (osr-export --format web of a model with the layout step) and images/."""
    require_browser()
    tmp = tmp_path_factory.mktemp("web")
    model, spec, record = load_checkpoint(trained_digits / "model.pt")
    spec = spec.replace(preprocessing=dataclasses.replace(spec.preprocessing, steps=("layout",)))
    checkpoint = save_checkpoint(tmp / "model.pt", model, spec, record)
    site = tmp / "site"
    result = run_export(checkpoint, "--format", "web", "--out", site, "--probe-size", "64")
    assert result.exit_code == 0, result.output
    assert not (site / "model.onnx").exists(), "--format web writes the page folder only"
    _parity_folder(site / "images")
    return site


def _python_reference(site: Path, paths: list[Path]) -> tuple[list[np.ndarray], dict, ModelMetadata]:
    """Python's pixels (load_image) and ONNX Runtime's outputs on them."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(site / "web" / "model.onnx"), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    pixels = [load_image(p, metadata.contract) for p in paths]
    logits, probs, score = session.run(["logits", "probs", "score"], {"input": metadata.contract.normalize(np.stack(pixels))})
    return pixels, {"logits": logits, "probs": probs, "score": score}, metadata


def _classify_in_browser(site: Path, files: list[Path]) -> tuple[dict, list[dict]]:
    """The page's model information and its results for ``files`` (in ``site``/images/)."""
    driver = start_browser()
    try:
        with serve(site) as base:
            info = open_page(driver, f"{base}/web/index.html")
            return info, classify_in_page(driver, [f"../images/{p.name}" for p in files])
    finally:
        driver.quit()


def _osr_infer_labels(folder: Path, model: Path, out: Path) -> dict[str, dict]:
    from osr_infer.cli import InferOptions, infer_command
    from osr_infer.results import read_results

    status = infer_command(InferOptions([str(folder)], model=model, output=out, progress=False))
    assert status == 0
    return {str(Path(row["path"]).resolve()): row for row in read_results(out)}


def test_page_gives_pythons_pixels_scores_and_decisions(web_site, tmp_path):
    images = web_site / "images"
    paths = sorted(p for p in images.rglob("*") if p.is_file())
    urls = ["../images/" + p.relative_to(images).as_posix() for p in paths]
    driver = start_browser()
    try:
        with serve(web_site) as base:
            info = open_page(driver, f"{base}/web/index.html")
            in_page = classify_in_page(driver, urls)
    finally:
        driver.quit()
    pixels, outputs, metadata = _python_reference(web_site, paths)
    assert info["threshold"] == metadata.threshold and info["score"] == metadata.score  # read from the model file itself
    assert info["classes"] == list(metadata.class_names)
    infer = _osr_infer_labels(images, web_site / "web" / "model.onnx", tmp_path / "r.jsonl")

    exact, approximate, pixel_mismatch, score_mismatch, decision_mismatch, agree_approximate = 0, 0, [], [], [], 0
    for i, (path, entry) in enumerate(zip(paths, in_page, strict=True)):
        name = str(path.relative_to(images))
        assert "error" not in entry, f"{name}: the page failed: {entry.get('error')}"
        label = infer[str(path.resolve())]["label"]
        if not entry["exact"]:
            assert path.suffix == ".jpg", f"{name}: only draft-scaled JPEGs may be approximate ({entry['note']})"
            approximate += 1
            agree_approximate += entry["label"] == label
            continue
        exact += 1
        page_pixels = np.frombuffer(base64.b64decode(entry["pixels"]), dtype=np.uint8).reshape(pixels[i].shape)
        if not np.array_equal(page_pixels, pixels[i]):
            pixel_mismatch.append(f"{name}: {int((page_pixels != pixels[i]).sum())} pixels differ")
        difference = max(abs(entry["score"] - float(outputs["score"][i])),
                         float(np.abs(np.asarray(entry["probs"]) - outputs["probs"][i]).max()))
        if difference > SCORE_ATOL:
            score_mismatch.append(f"{name}: {difference:.2e}")
        if entry["label"] != label or entry["known"] != (label != "unknown"):
            decision_mismatch.append(f"{name}: page {entry['label']}, osr-infer {label}")
    assert not pixel_mismatch, pixel_mismatch[:10]
    assert not score_mismatch, score_mismatch[:10]
    assert not decision_mismatch, decision_mismatch[:10]
    assert exact >= 200, f"only {exact} images compared exactly"
    # Draft-scaled JPEGs: the browser decodes them whole and averages blocks (PIL scales in the DCT domain).
    if approximate:
        assert agree_approximate / approximate >= 0.8, f"{agree_approximate} of {approximate} approximate decisions agree"
    print(f"web parity: {exact} images identical (pixels, scores within {SCORE_ATOL:g}, decisions); "
          f"{agree_approximate} of {approximate} draft-scaled JPEGs decided alike")


def test_page_runs_an_rgb_model_of_another_data_set(trained_rgb, tmp_path):
    """The model spec carries any data set to the browser: a 12-class RGB 32x32 model (plain
    resize, no layout step) gives Python's pixels, scores and labels in the page too."""
    require_browser()
    images_root, model_dir = trained_rgb
    site = tmp_path / "site"
    result = run_export(model_dir / "model.pt", "--format", "web", "--out", site, "--probe-size", "64")
    assert result.exit_code == 0, result.output
    (site / "images").mkdir()
    paths = sorted((images_root / "test").rglob("*.png"))[:30]
    for k, path in enumerate(paths):
        shutil.copyfile(path, site / "images" / f"{k:03d}.png")
    for k, rgb in enumerate(cifar_like_rgb(20, seed=9)):  # JPEGs, and sizes other than 32x32
        Image.fromarray(rgb).resize((45, 37)).save(site / "images" / f"photo{k:02d}.jpg", quality=88)
    files = sorted((site / "images").iterdir())
    info, in_page = _classify_in_browser(site, files)
    pixels, outputs, metadata = _python_reference(site, files)
    assert metadata.contract.channels == 3 and len(info["classes"]) == len(metadata.class_names) == 12
    for i, entry in enumerate(in_page):
        assert entry["exact"], entry
        page_pixels = np.frombuffer(base64.b64decode(entry["pixels"]), dtype=np.uint8).reshape(pixels[i].shape)
        assert np.array_equal(page_pixels, pixels[i]), files[i].name
        assert abs(entry["score"] - float(outputs["score"][i])) <= SCORE_ATOL, files[i].name
        known = float(outputs["score"][i]) >= metadata.threshold
        assert entry["label"] == (metadata.class_names[int(np.argmax(outputs["logits"][i]))] if known else "unknown")


@pytest.mark.parametrize("score", ["prototype", "kl_prototype", "openmax"])
def test_page_computes_a_score_fitted_on_the_hidden_layer(trained_digits, tmp_path, score):
    """The prototype score (normalisation and products on fc1's output, inside the graph),
    kl_prototype (with a log-softmax of the logits added before the max) and openmax (pairwise
    ranks, Weibull CDFs and a softmax over the revised logits) run in ONNX Runtime Web as in
    Python: the same scores and decisions."""
    require_browser()
    model, spec, record = load_checkpoint(trained_digits / "model.pt")
    params = record["fitted_scores"][score]  # fitted by osr-train on the training knowns
    spec = spec.replace(score=score, score_params=params, threshold=0.9, calibration={"method": "fixed"})
    checkpoint = save_checkpoint(tmp_path / "model.pt", model, spec, record)
    site = tmp_path / "site"
    result = run_export(checkpoint, "--format", "web", "--out", site, "--probe-size", "64")
    assert result.exit_code == 0, result.output
    images, _ = digit_images(40, seed=3)
    files = write_pngs(site / "images", images)
    info, in_page = _classify_in_browser(site, files)
    _, outputs, metadata = _python_reference(site, files)
    assert info["score"] == metadata.score == score
    assert len(set(np.round(outputs["score"], 4))) > 10  # real scores, not one constant
    for i, entry in enumerate(in_page):
        assert abs(entry["score"] - float(outputs["score"][i])) <= SCORE_ATOL, files[i].name
        known = float(outputs["score"][i]) >= metadata.threshold
        assert entry["label"] == (metadata.class_names[int(np.argmax(outputs["logits"][i]))] if known else "unknown")


def test_page_classifies_a_chosen_file_and_a_drawing(web_site):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = next((web_site / "images" / "odd").glob("seven-exif6.jpg"))
    driver = start_browser()
    try:
        with serve(web_site) as base:
            info = open_page(driver, f"{base}/web/index.html")
            assert f"{info['threshold']:.4f}" in driver.find_element(By.ID, "model").text  # the model's own threshold
            driver.find_element(By.ID, "files").send_keys(str(photo))
            WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result")) == 1)
            card = driver.find_element(By.CSS_SELECTOR, ".result")
            assert card.find_elements(By.TAG_NAME, "canvas"), "the preprocessed 28x28 input is shown"
            label = card.find_element(By.CSS_SELECTOR, ".label").text
            assert label in info["classes"] + ["unknown"]
            pad = driver.find_element(By.ID, "pad")
            ActionChains(driver).move_to_element_with_offset(pad, -40, -80).click_and_hold() \
                .move_by_offset(80, 0).move_by_offset(-50, 160).release().perform()
            driver.find_element(By.ID, "classify-drawing").click()
            WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result")) == 2)
            drawn = driver.find_elements(By.CSS_SELECTOR, ".result")[0]
            assert "drawing.png" in drawn.text and drawn.find_elements(By.TAG_NAME, "canvas")
            # A broken file among good ones: its own card says why, the others are classified.
            broken = web_site / "broken.png"
            broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
            chooser = driver.find_element(By.ID, "files")
            # ChromeDriver adds to a multiple input's files; a person's new choice replaces them
            driver.execute_script("arguments[0].value = '';", chooser)
            chooser.send_keys(f"{broken}\n{photo}")
            WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result")) >= 4)
            assert len(driver.find_elements(By.CSS_SELECTOR, ".result")) == 4, "one card a file: two before, two now"
            texts = [c.text for c in driver.find_elements(By.CSS_SELECTOR, ".result")[:2]]
            assert any("cannot read this image" in t and "broken.png" in t for t in texts), texts
            assert any("seven-exif6.jpg" in t and "cannot read" not in t for t in texts), texts
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors[:3]
    finally:
        driver.quit()


def test_bundled_server_isolates_the_page_so_the_runtime_uses_threads(web_site):
    """web/serve.py sends COOP and COEP: the page is cross-origin isolated, ONNX Runtime Web
    gets several threads (where the machine has several cores), and still classifies."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(web_site / "web" / "serve.py"), str(port)], stdout=subprocess.PIPE, text=True)
    driver = start_browser()
    try:
        assert f"http://localhost:{port}/" in server.stdout.readline()
        info = open_page(driver, f"http://localhost:{port}/index.html")
        assert driver.execute_script("return window.crossOriginIsolated") is True
        cores = driver.execute_script("return navigator.hardwareConcurrency")
        assert info["threads"] == min(4, cores)
        shutil.copyfile(web_site / "images" / "odd" / "seven-grey.jpg", web_site / "web" / "probe.jpg")  # served by serve.py
        [entry] = classify_in_page(driver, ["probe.jpg"])
        assert entry["exact"] and entry["label"] in info["classes"] + ["unknown"]
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)
        (web_site / "web" / "probe.jpg").unlink(missing_ok=True)


def test_web_bundle_is_self_contained(web_site):
    """Everything the page loads is in the folder: no URL outside it in the page's files."""
    web = web_site / "web"
    names = {p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "contract.js", "model.onnx", "ort/ort.wasm.min.mjs", "ort/ort-wasm-simd-threaded.wasm"} <= names
    for name in ("index.html", "app.js", "osr.js", "contract.js", "png.js", "decode.js", "metadata.js", "serve.py"):
        text = (web / name).read_text()
        assert not re.search(r"https?://(?!localhost[:/])", text) and "cdn" not in text.lower(), name


def test_export_web_without_runtime_is_one_clear_line(trained_digits, tmp_path, monkeypatch):
    monkeypatch.setenv("OSR_WEB_RUNTIME", str(tmp_path / "nowhere"))
    result = run_export(trained_digits / "model.pt", "--format", "web", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "ONNX Runtime Web" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_web_export_replaces_the_folder_atomically(trained_digits, tmp_path):
    """A second export replaces web/ whole (a stale file of the first is gone), leaves no temporary
    folder behind, gives the files the user's umask, and refuses a web/ that is a symbolic link."""
    from osr_export.web_export import WebRuntimeMissing, find_runtime

    try:
        find_runtime()
    except WebRuntimeMissing:
        require_browser()  # skips (fails in CI) with the reason
    out = tmp_path / "out"
    result = run_export(trained_digits / "model.pt", "--format", "web", "--out", out, "--probe-size", "16")
    assert result.exit_code == 0, result.output
    (out / "web" / "stale.txt").write_text("not part of an export")
    result = run_export(trained_digits / "model.pt", "--format", "web", "--out", out, "--probe-size", "16")
    assert result.exit_code == 0, result.output
    assert not (out / "web" / "stale.txt").exists() and (out / "web" / "index.html").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["web"]  # no .web.*.tmp or .old folder left
    assert ((out / "web" / "model.onnx").stat().st_mode & 0o777) == 0o666 & ~current_umask()
    target = tmp_path / "elsewhere"
    target.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "web").symlink_to(target)
    result = run_export(trained_digits / "model.pt", "--format", "web", "--out", linked, "--probe-size", "16")
    assert result.exit_code == 2 and "refusing to replace it" in result.output, result.output
    assert not any(target.iterdir())
