"""Image features: a pretrained encoder with user-supplied local weights, or an honest
weight-free descriptor.

Pretrained encoders run from a local file, nothing is downloaded:

* ``*.onnx``: any ONNX image model (e.g. a ResNet or a CLIP image tower exported to ONNX), run by
  ``onnxruntime`` on the CPU. onnxruntime has no dependency on torch, so it installs beside the CPU
  torch wheel; timm, open_clip and torchvision from PyPI all pull another torch release (and
  PyPI's torchvision does not import beside torch 2.13 CPU).
* ``*.pt2``: a program saved with ``torch.export.save``, or ``*.pt`` / ``*.pth`` / ``*.ts``: a
  TorchScript model (``torch.jit.save``), run by the installed torch.

Both get ``[n, 3, H, W]`` float32 RGB in [0, 1], normalised with the ImageNet mean and standard
deviation (resize the shorter side to ``H / 0.875``, centre crop ``H x W``; ``H = W = 224``
unless the model's input has a fixed size). A ``[n, C, h, w]`` output is averaged over ``h, w``;
other outputs are flattened to ``[n, d]``.

:class:`ColourDescriptor` needs no weights: per-channel colour histograms plus a tiny thumbnail.
It is not a learned encoder and is only used when asked for or when no weights are given (the
caller announces it).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mentor.errors import MentorError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGES_HINT = 'pip install "mentor-rec[images]"'


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MentorError(f"image features need Pillow; install: {IMAGES_HINT}") from None
    return Image


def load_rgb(path: Path) -> Any:
    """Open an image file as an RGB PIL image; ``None`` when it cannot be decoded."""
    image_mod = _pil()
    try:
        with image_mod.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, image_mod.DecompressionBombError):
        return None


def file_sha256(path: Path) -> str:
    """SHA-256 of a weights file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


class ImageEncoder(ABC):
    """Base: ``encoder(paths) -> float32 [len(paths), dim]``, NaN rows for unreadable images."""

    name = "image encoder"
    dim = 0

    @abstractmethod
    def encode_images(self, images: list[Any]) -> np.ndarray:
        """Embed decoded RGB PIL images: float32 [len(images), dim]."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Encoder provenance for meta.json (name, weights checksum, dim)."""

    def identity(self) -> str:
        """A string that changes whenever the encoder's output could change."""
        return "image|" + json.dumps(self.describe(), sort_keys=True, default=str)

    def __call__(self, paths: Sequence[Path]) -> np.ndarray:
        """Load and embed ``paths``; an unreadable file gives a row of NaN."""
        images = [load_rgb(Path(p)) for p in paths]
        good = [i for i, img in enumerate(images) if img is not None]
        out = np.full((len(paths), self.dim), np.nan, dtype=np.float32)
        if good:
            out[good] = self.encode_images([images[i] for i in good])
        return out


class ColourDescriptor(ImageEncoder):
    """Weight-free descriptor: per-channel colour histograms and a small RGB thumbnail.

    For an image: ``bins`` histogram bins of each of R, G, B (each histogram sums to 1), then
    the ``thumb x thumb`` RGB thumbnail (box-filtered, values in [0, 1]), concatenated:
    ``dim = 3 * bins + 3 * thumb**2`` (240 with the defaults). It captures colour and coarse
    layout only; it is not a learned image encoder.
    """

    def __init__(self, bins: int = 16, thumb: int = 8) -> None:
        self.bins = bins
        self.thumb = thumb
        self.dim = 3 * bins + 3 * thumb * thumb
        self.name = (
            f"colour-histogram-thumbnail descriptor (weight-free, not a learned encoder): "
            f"{bins}-bin R/G/B histograms + {thumb}x{thumb} RGB thumbnail"
        )

    def describe(self) -> dict[str, Any]:
        """Encoder provenance for meta.json."""
        return {
            "encoder": self.name,
            "weights": "none",
            "pillow": _package_version("pillow"),
            "dim": self.dim,
        }

    def encode_images(self, images: list[Any]) -> np.ndarray:
        """float32 [len(images), 3 * bins + 3 * thumb**2]."""
        image_mod = _pil()
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for row, img in enumerate(images):
            pixels = np.asarray(img, dtype=np.int64).reshape(-1, 3)
            levels = pixels * self.bins // 256
            hist = [np.bincount(levels[:, c], minlength=self.bins) for c in range(3)]
            hist_arr = np.concatenate(hist).astype(np.float64) / max(1, len(pixels))
            small = img.resize((self.thumb, self.thumb), image_mod.Resampling.BOX)
            thumb = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
            out[row] = np.concatenate([hist_arr.astype(np.float32), thumb])
        return out


def _preprocess(images: list[Any], height: int, width: int) -> np.ndarray:
    """Resize the shorter side to ``side / 0.875``, centre crop, scale to [0, 1], normalise:
    float32 [n, 3, height, width]."""
    image_mod = _pil()
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    out = np.empty((len(images), 3, height, width), dtype=np.float32)
    target = max(height, width) / 0.875
    for row, img in enumerate(images):
        scale = target / min(img.size)
        new = (max(width, round(img.size[0] * scale)), max(height, round(img.size[1] * scale)))
        resized = img.resize(new, image_mod.Resampling.BILINEAR)
        left = (new[0] - width) // 2
        top = (new[1] - height) // 2
        crop = resized.crop((left, top, left + width, top + height))
        arr = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0
        out[row] = (arr - mean) / std
    return out


def _pool(output: np.ndarray) -> np.ndarray:
    """``[n, C, h, w]`` -> mean over ``h, w``; anything else -> ``[n, -1]``."""
    output = np.asarray(output, dtype=np.float32)
    if output.ndim == 4:
        return output.mean(axis=(2, 3))
    return output.reshape(output.shape[0], -1)


class OnnxImageEncoder(ImageEncoder):
    """A local ONNX image model run by onnxruntime on the CPU (first input, first output)."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MentorError(
                f"an .onnx image model needs onnxruntime; install: {IMAGES_HINT}"
            ) from None
        self.path = Path(path).expanduser().resolve()
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise MentorError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        shape = list(spec.shape)
        if len(shape) != 4:
            raise MentorError(f"{self.path}: input {spec.name} has shape {shape}; need N,3,H,W")
        self.height = shape[2] if isinstance(shape[2], int) else 224
        self.width = shape[3] if isinstance(shape[3], int) else 224
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        probe = self._run(np.zeros((1, 3, self.height, self.width), dtype=np.float32))
        self.dim = int(probe.shape[1])
        self.checksum = file_sha256(self.path)
        self.name = f"ONNX image model {self.path.name} (onnxruntime, local weights)"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.fixed_batch is not None and self.fixed_batch != len(batch):
            rows = [self._run_once(batch[i : i + 1]) for i in range(len(batch))]
            return np.concatenate(rows, axis=0)
        return self._run_once(batch)

    def _run_once(self, batch: np.ndarray) -> np.ndarray:
        return _pool(self.session.run(None, {self.input_name: batch})[0])

    def describe(self) -> dict[str, Any]:
        """Encoder provenance for meta.json."""
        return {
            "encoder": self.name,
            "weights": str(self.path),
            "weights_sha256": self.checksum,
            "onnxruntime": _package_version("onnxruntime"),
            "input": f"RGB {self.height}x{self.width}, ImageNet mean/std",
            "dim": self.dim,
        }

    def encode_images(self, images: list[Any]) -> np.ndarray:
        """float32 [len(images), dim]."""
        return self._run(_preprocess(images, self.height, self.width))


class TorchImageEncoder(ImageEncoder):
    """A local torch image model on the CPU: TorchScript (``torch.jit.save``: ``.pt``,
    ``.pth``, ``.ts``) or an exported program (``torch.export.save``: ``.pt2``)."""

    def __init__(self, path: Path, size: int = 224) -> None:
        import warnings

        import torch

        self.path = Path(path).expanduser().resolve()
        exported = self.path.suffix.lower() == ".pt2"
        kind = "torch.export program" if exported else "TorchScript model"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                if exported:
                    self.module = torch.export.load(str(self.path)).module()
                else:
                    self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except Exception as exc:  # torch raises many types for a file that is not a model
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MentorError(f"{self.path}: not a {kind} ({first})") from None
        self.height = self.width = size
        probe = self._run(np.zeros((1, 3, size, size), dtype=np.float32))
        self.dim = int(probe.shape[1])
        self.checksum = file_sha256(self.path)
        self.name = f"{kind} {self.path.name} (torch, local weights)"

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return _pool(out.detach().cpu().numpy())

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self._forward(batch)
        except (RuntimeError, AssertionError):  # an exported program's shape guard asserts
            if len(batch) == 1:
                raise
            # a program exported for a fixed batch size: one image at a time
            return np.concatenate([self._forward(batch[i : i + 1]) for i in range(len(batch))])

    def describe(self) -> dict[str, Any]:
        """Encoder provenance for meta.json."""
        import torch

        return {
            "encoder": self.name,
            "weights": str(self.path),
            "weights_sha256": self.checksum,
            "torch": torch.__version__,
            "input": f"RGB {self.height}x{self.width}, ImageNet mean/std",
            "dim": self.dim,
        }

    def encode_images(self, images: list[Any]) -> np.ndarray:
        """float32 [len(images), dim]."""
        return self._run(_preprocess(images, self.height, self.width))


def make_image_encoder(model: str | None) -> ImageEncoder:
    """The encoder for ``--image-model``: an ``.onnx``, TorchScript or ``.pt2`` file, or
    ``None`` / ``"descriptor"`` for :class:`ColourDescriptor`."""
    if model is None or model == "descriptor":
        return ColourDescriptor()
    path = Path(model).expanduser()
    if not path.is_file():
        raise MentorError(
            f"--image-model {model}: no such file; give a local .onnx or TorchScript (.pt) "
            "file, or --image-model descriptor for the weight-free descriptor"
        )
    if path.suffix.lower() == ".onnx":
        return OnnxImageEncoder(path)
    if path.suffix.lower() in (".pt", ".pth", ".ts", ".jit", ".pt2"):
        return TorchImageEncoder(path)
    raise MentorError(
        f"--image-model {model}: unknown model format {path.suffix!r}; use .onnx, a TorchScript "
        ".pt or a torch.export .pt2 file"
    )


def scan_image_folder(folder: Path, item_ids: Sequence[str]) -> tuple[list[Path | None], list[str]]:
    """Match ``<item id>.<image extension>`` files in ``folder`` to ``item_ids``.

    Returns:
        (one path or None per item, warnings about files that match no item or are not
        images, and about items with several images: the first name in sorted order wins).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MentorError(f"{folder}: not a folder; --images needs a folder of <item id>.jpg")
    wanted = {str(i): n for n, i in enumerate(item_ids)}
    paths: list[Path | None] = [None] * len(item_ids)
    not_image: list[str] = []
    no_item = 0
    several = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            not_image.append(path.name)
            continue
        index = wanted.get(path.stem)
        if index is None:
            no_item += 1
        elif paths[index] is None:
            paths[index] = path
        else:
            several += 1
    warnings = []
    if not_image:
        warnings.append(
            f"{folder}: ignored {len(not_image):,} entr(y/ies) that are not image files "
            f"(e.g. {not_image[0]!r})"
        )
    if no_item:
        warnings.append(f"{folder}: ignored {no_item:,} image(s) whose name is no item id")
    if several:
        warnings.append(f"{folder}: {several:,} extra image(s) for items that have one already")
    return paths, warnings
