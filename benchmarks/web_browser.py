"""The web format in headless Chromium: images/s of the page, and a screenshot for the docs (docs/web-page.png).

    python benchmarks/web_browser.py --model artifacts/siamese/model.pt

Exports the checkpoint with ``osr-export --format web`` into a temporary folder (or takes
``--web`` folder already exported), serves it on localhost, and measures in the page, on one
wasm thread (a plain static server is not cross-origin isolated):
- the network alone (ONNX Runtime Web, batch 256), the figure to compare with Python's;
- end to end from file bytes in memory (as a page gets them from a file input; fetching them
  from the local server is timed apart): decode, the contract's JavaScript preprocessing
  (layout step included) and the network, on MNIST test PNGs and CIFAR-10 JPEGs (real data)
  and realistic photos;
and, in the same run, Python's ONNX Runtime on the same model and batch for the ratio.
Writes ``benchmarks/results/web_browser.json`` and ``docs/web-page.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from osr_export.browser import open_page, serve, start_browser

HERE = Path(__file__).resolve().parent

TIME_URLS = """
const [urls, done] = [arguments[0], arguments[arguments.length - 1]];
window.osr.classifyUrls(urls).then(r => done({...window.osr.lastTiming, n: r.length, errors: r.filter(x => x.error).length,
                                               rows: r.map(x => [x.url, x.label, x.score, x.exact])}),
                                   e => done({error: String(e)}));
"""
NETWORK = """
const done = arguments[arguments.length - 1];
const m = window.osr.model;
m.benchmark(new Uint8Array(m.inputShape.reduce((a, b) => a * b, 1)), arguments[0]).then(done, e => done(String(e)));
"""


def python_onnxruntime_rate(model: Path, n: int, threads: int = 1) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    x = np.zeros((256, *session.get_inputs()[0].shape[1:]), dtype=np.float32)
    session.run(None, {"input": x})
    t0 = time.perf_counter()
    for _ in range(max(1, n // 256)):
        session.run(None, {"input": x})
    return max(1, n // 256) * 256 / (time.perf_counter() - t0)


def agreement_with_osr_infer(site: Path, rows: list) -> dict:
    """The page's labels and scores against osr-infer's on the same files, exact and approximate
    (draft-scaled JPEGs) apart."""
    from osr_infer.cli import InferOptions, infer_command
    from osr_infer.results import read_results

    paths = [(site / "web" / url).resolve() for url, *_ in rows]
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "files"
        listing.mkdir()
        for k, path in enumerate(paths):
            (listing / f"{k:05d}{path.suffix}").symlink_to(path)
        out = Path(tmp) / "r.jsonl"
        infer_command(InferOptions([str(listing)], model=site / "web" / "model.onnx", output=out, progress=False))
        python = {int(Path(r["path"]).stem): r for r in read_results(out)}
    result: dict[str, float] = {}
    for kind, want in (("exact", True), ("approximate", False)):
        chosen = [(k, row) for k, row in enumerate(rows) if bool(row[3]) == want]
        if chosen:
            result[f"{kind}_images"] = len(chosen)
            result[f"{kind}_same_decision"] = sum(row[1] == python[k]["label"] for k, row in chosen)
            result[f"{kind}_max_score_difference"] = float(max(abs(row[2] - python[k]["score"]) for k, row in chosen))
    return result


def image_sets(root: Path, data_dir: Path, n: int) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    if (data_dir / "MNIST" / "raw").is_dir():
        from osr_infer.data.mnist import load_mnist

        test = load_mnist(data_dir, "test")
        (root / "mnist").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(test.images[i]).save(root / "mnist" / f"{i:05d}.png")
        sets["MNIST test PNGs"] = [f"../images/mnist/{i:05d}.png" for i in range(n)]
    jpegs = sorted((data_dir / "cifar10-test-jpeg").rglob("*.jpg"))[:n]
    if jpegs:
        (root / "cifar").mkdir(parents=True)
        for k, path in enumerate(jpegs):
            shutil.copyfile(path, root / "cifar" / f"{k:05d}.jpg")
        sets["CIFAR-10 test JPEGs"] = [f"../images/cifar/{k:05d}.jpg" for k in range(len(jpegs))]
    subprocess.run([sys.executable, str(HERE / "make_realistic.py"), str(root / "realistic"), "--n-digits", "80", "--n-letters", "20",
                    "--seed", "21", "--data-dir", str(data_dir)], check=True, capture_output=True)
    photos = sorted(p.relative_to(root).as_posix() for p in (root / "realistic").rglob("*") if p.suffix in (".jpg", ".png"))
    sets["realistic photos (400x300 to 4032x3024)"] = [f"../images/{p}" for p in photos]
    return sets


def screenshot(driver, site: Path, out: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    digits = site / "images" / "realistic" / "digits"
    photos = [min(folder.glob("*.jpg")) for folder in sorted(p for p in digits.iterdir() if p.is_dir()) if any(folder.glob("*.jpg"))][2:9:3]
    letters = sorted((site / "images" / "realistic" / "letters").rglob("*.jpg"))[:1]
    cifar = sorted((site / "images" / "cifar").glob("*.jpg"))[:1]
    driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in [*photos, *letters, *cifar]))
    WebDriverWait(driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result")) == len(photos) + len(letters) + len(cifar))
    pad = driver.find_element(By.ID, "pad")
    ActionChains(driver).move_to_element_with_offset(pad, -50, -90).click_and_hold().move_by_offset(95, 0) \
        .move_by_offset(-60, 170).release().perform()
    driver.find_element(By.ID, "classify-drawing").click()
    WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result")) == len(photos) + len(letters) + len(cifar) + 1)
    driver.find_element(By.ID, "speed-button").click()
    WebDriverWait(driver, 120).until(lambda d: "images/s" in d.find_element(By.ID, "speed").text)
    driver.set_window_size(1100, 1000)
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("artifacts/siamese/model.pt"))
    parser.add_argument("--web", type=Path, help="an exported web/ folder (default: export --model now)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--n", type=int, default=1000, help="images per real data set")
    parser.add_argument("--network-images", type=int, default=20480)
    parser.add_argument("--screenshot", type=Path, default=HERE.parent / "docs" / "web-page.png")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        if args.web:
            shutil.copytree(args.web, site / "web")
        else:
            subprocess.run([sys.executable, "-m", "osr_export.cli", str(args.model), "--format", "web", "--out", str(site)], check=True)
        sets = image_sets(site / "images", args.data_dir, args.n)
        driver = start_browser()
        try:
            with serve(site) as base:
                info = open_page(driver, f"{base}/web/index.html")
                network = driver.execute_async_script(NETWORK, args.network_images)
                end_to_end = {}
                for name, urls in sets.items():
                    timed = driver.execute_async_script(TIME_URLS, urls)
                    seconds = timed["decode_preprocess_classify"] / 1000
                    end_to_end[name] = {"images": timed["n"], "errors": timed["errors"], "seconds": round(seconds, 3),
                                        "images_per_s": round(timed["n"] / seconds, 1),
                                        "fetch_seconds_not_counted": round(timed["fetch"] / 1000, 3)}
                    end_to_end[name].update(agreement_with_osr_infer(site, timed["rows"]))
                    print(f"{name}: {end_to_end[name]}")
                version = driver.capabilities.get("browserVersion")
            with serve(site, isolated=True) as base:  # what the bundle's serve.py does: threads allowed
                info_isolated = open_page(driver, f"{base}/web/index.html")
                network_isolated = driver.execute_async_script(NETWORK, args.network_images)
                timed = driver.execute_async_script(TIME_URLS, sets["CIFAR-10 test JPEGs"]) if "CIFAR-10 test JPEGs" in sets else None
            with serve(site) as base:
                open_page(driver, f"{base}/web/index.html")
                screenshot(driver, site, args.screenshot)
        finally:
            driver.quit()
        python_rate = python_onnxruntime_rate(site / "web" / "model.onnx", args.network_images)
    result = {
        "command": "python " + " ".join(sys.argv),
        "browser": f"Chromium {version} (headless), ONNX Runtime Web wasm, {info['threads']} thread(s)",
        "network_images_per_s": round(network, 1),
        "python_onnxruntime_1_thread_images_per_s": round(python_rate, 1),
        "browser_vs_python_network": round(network / python_rate, 3),
        "cross_origin_isolated": {
            "threads": info_isolated["threads"], "network_images_per_s": round(network_isolated, 1),
            "cifar_end_to_end_images_per_s": round(timed["n"] / (timed["decode_preprocess_classify"] / 1000), 1) if timed else None,
        },
        "end_to_end": end_to_end,
        "screenshot": str(args.screenshot.relative_to(HERE.parent)) if args.screenshot.is_relative_to(HERE.parent) else str(args.screenshot),
    }
    print(f"network: {network:,.0f} images/s in the browser, {python_rate:,.0f} in Python's ONNX Runtime (1 thread)")
    out = HERE / "results" / "web_browser.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
