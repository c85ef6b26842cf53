"""``numnet predict``: classify digit images with saved weights.

An image becomes one MNIST-like ``(784,)`` float32 row in [0, 1], white digit on black:

1. read with Pillow as grayscale in [0, 1] without loss of range, transparency composited
   (:func:`load_grayscale`, :func:`to_grayscale`, :func:`composite_alpha`);
2. inverted when the digit is dark on light: the border's median brightness is the background
   (MNIST's is black);
3. brought to 28x28 by ``method``: ``"mnist"`` as MNIST was made (:func:`mnist_frame`: the
   digit's bounding box scaled into 20x20, its centre of mass at the centre of 28x28),
   ``"area"`` the whole image scaled to 28x28 (for images framed like MNIST, only larger), or
   ``"auto"`` (default): 28x28 images as they are, larger ones as ``"mnist"``.

Weights of a run that diverged or did not learn classify no better than chance: their header
metadata or their run record says so, and ``predict_files`` warns in one line on stderr
(:func:`weights_warning`).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numnet.core import documents, serialize
from numnet.core.backend import to_numpy
from numnet.core.datasets import pixels_to_images
from numnet.core.errors import DataError, NumnetError, WeightsFileError
from numnet.core.io import child_path, read_json
from numnet.core.losses import softmax
from numnet.lab.progress import stderr_log
from numnet.lab.report.diagnosis import FAILED, diagnose

METHODS = ("auto", "mnist", "area")
SIDE = 28
BOX = 20  # MNIST digits were normalised to fit a 20x20 box, centred by mass in 28x28


@dataclass
class Prediction:
    """The predicted class of one image and the softmax probabilities of the 10 classes."""

    path: str
    label: int
    probabilities: list[float]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.path, "class": self.label, "probabilities": self.probabilities}


#: The largest image predict decodes: 16 megapixels (4096x4096, 128 MB as float64). The size
#: is read from the header before any pixel is decoded, so a 90 KB PNG that claims 20000x20000
#: costs nothing.
MAX_PIXELS = 4096 * 4096
#: The largest image file predict opens (a 4096x4096 RGBA PNG without compression is 64 MiB).
MAX_IMAGE_BYTES = 64 << 20
#: The formats predict decodes: the common raster formats (not EPS, which Pillow renders by
#: running Ghostscript, nor the rarer plugins).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
#: An image whose pixels all lie within this brightness range is uniform: no digit to classify.
UNIFORM_RANGE = 0.05


def load_grayscale(path: str | Path) -> np.ndarray:
    """The image at ``path`` as a ``(H, W)`` float64 array in [0, 1] (0 black, 1 white).

    Refused with a DataError naming the file: not a regular file, larger than
    MAX_IMAGE_BYTES, unreadable, more than MAX_PIXELS pixels (checked from the header, before
    decoding), smaller than 28x28, fully transparent, or uniform (blank, any size)."""
    from PIL import Image, UnidentifiedImageError

    shown = documents.display(path)
    data = documents.read_bytes(path, "image file", max_bytes=MAX_IMAGE_BYTES, error=DataError)
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size  # from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                raise DataError(
                    f"{shown}: image is {width}x{height} pixels, more than numnet predict reads "
                    f"({MAX_PIXELS // 10**6} megapixels); scale it down (a digit needs 28x28)")
            img.load()
            gray = to_grayscale(img, shown)
    except Image.DecompressionBombError as exc:  # PIL's own cap, met in the header too
        raise DataError(f"{shown}: image is too large to decode ({exc}); scale it down (a "
                        "digit needs 28x28)") from None
    except UnidentifiedImageError:
        raise DataError(f"{shown}: not a readable image (none of {', '.join(IMAGE_FORMATS)}); "
                        "give a PNG file") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
            zlib.error) as exc:
        # SyntaxError, struct.error, IndexError: what Pillow's decoders raise on damaged files
        raise DataError(f"{shown}: not a readable image ({documents.printable(str(exc))}); "
                        f"give a PNG file") from None
    if gray.shape[0] < SIDE or gray.shape[1] < SIDE:
        raise DataError(
            f"{shown}: image is {gray.shape[1]}x{gray.shape[0]} pixels; it must be at least "
            f"{SIDE}x{SIDE} (a grayscale digit, like MNIST's)"
        )
    if float(gray.max() - gray.min()) <= UNIFORM_RANGE:
        raise DataError(f"{shown}: the image is uniform (every pixel about "
                        f"{float(gray.mean()):.2f}); no digit found, give an image of a digit")
    return gray


#: Pillow modes of 16-bit grayscale pixels (the PNG's full range is 0..65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_grayscale(img: Any, shown: str = "<image>") -> np.ndarray:
    """A decoded Pillow image as ``(H, W)`` float64 brightness in [0, 1], scaled by the range
    of its bit depth (never clipped: Pillow's own conversion of 16-bit pixels to 8 bits clips
    everything above 255 to white); transparency composited by :func:`composite_alpha`."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        return np.asarray(img, dtype=np.float64) / 65535.0
    if mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"{shown}: the image holds non-finite pixel values; save it as an "
                            "8-bit or 16-bit PNG")
        # 32-bit containers say nothing of the depth of their values: the range does (a
        # float image in [0, 1]; 8-bit values; 16-bit values, as Pillow opens some 16-bit PNGs)
        lo, hi = float(values.min()), float(values.max())
        if mode == "F" and lo >= 0.0 and hi <= 1.0:
            return values
        if lo >= 0.0 and hi <= 255.0:
            return values / 255.0
        if lo >= 0.0 and hi <= 65535.0:
            return values / 65535.0
        raise DataError(f"{shown}: pixel values from {lo:g} to {hi:g} are outside the 8- and "
                        "16-bit ranges numnet reads; save it as an 8-bit or 16-bit PNG")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        luminance = np.asarray(rgba.convert("L"), dtype=np.float64) / 255.0
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
        return composite_alpha(luminance, alpha, shown)
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


def composite_alpha(luminance: np.ndarray, alpha: np.ndarray,
                    shown: str = "<image>") -> np.ndarray:
    """Brightness of an image with transparency, composited onto a background that keeps its
    digit visible. The alpha channel says what is drawn: when the drawn pixels (alpha > 0)
    cover less than half the image they are the ink, and the background is the opposite of
    the ink's brightness (alpha-weighted mean): black behind light ink, white behind dark ink
    -- a white digit on a transparent background becomes a white digit on black, exactly as
    the same digit drawn on black. When they cover more, they are the background themselves
    (a card with a transparent margin) and the transparent pixels take their median
    brightness. Compositing onto a fixed white (Pillow's habit) made a white digit vanish."""
    drawn = alpha > 0
    if not drawn.any():
        raise DataError(f"{shown}: the image is fully transparent; no digit found, give an "
                        "image of a digit")
    if drawn.mean() < 0.5:
        ink = float((luminance * alpha)[drawn].sum() / alpha[drawn].sum())
        background = 0.0 if ink >= 0.5 else 1.0
    else:
        background = float(np.median(luminance[drawn]))
    return alpha * luminance + (1.0 - alpha) * background


def is_dark_on_light(gray: np.ndarray) -> bool:
    """True when the background (median of the 2-pixel border) is brighter than mid-grey."""
    border = np.concatenate([gray[:2].ravel(), gray[-2:].ravel(),
                             gray[:, :2].ravel(), gray[:, -2:].ravel()])
    return float(np.median(border)) > 0.5


def _resize(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(gray.astype(np.float32))  # mode "F"
    shrinking = width <= img.width and height <= img.height
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.clip(np.asarray(img.resize((width, height), method), dtype=np.float64), 0, 1)


def mnist_frame(digit: np.ndarray) -> np.ndarray:
    """Crop a white-on-black ``digit`` ``(H, W)`` (not uniform: :func:`load_grayscale` refuses
    those) to its bounding box (pixels above 10% of the maximum), fit it in 20x20 (aspect ratio
    kept) and centre its mass in 28x28: MNIST's own normalisation."""
    peak = float(digit.max())
    rows = np.flatnonzero((digit > 0.1 * peak).any(axis=1))
    cols = np.flatnonzero((digit > 0.1 * peak).any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = _resize(crop, nw, nh)
    total = small.sum()
    cy = (small.sum(axis=1) @ np.arange(nh)) / total if total > 0 else (nh - 1) / 2
    cx = (small.sum(axis=0) @ np.arange(nw)) / total if total > 0 else (nw - 1) / 2
    top = int(np.clip(round((SIDE - 1) / 2 - cy), 0, SIDE - nh))
    left = int(np.clip(round((SIDE - 1) / 2 - cx), 0, SIDE - nw))
    out = np.zeros((SIDE, SIDE))
    out[top : top + nh, left : left + nw] = small
    return out


def image_to_vector(path: str | Path, method: str = "auto") -> np.ndarray:
    """One image file -> an MNIST-like ``(784,)`` float32 row (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    gray = load_grayscale(path)
    if is_dark_on_light(gray):
        gray = 1.0 - gray
    if method == "auto":
        method = "none" if gray.shape == (SIDE, SIDE) else "mnist"
    if method == "mnist":
        gray = mnist_frame(gray)
    elif method == "area":
        gray = _resize(gray, SIDE, SIDE)
    # MNIST pixels are bytes: quantise, then convert as the data sets do, so a PNG of a data-set
    # image gives back the very same row.
    u8 = np.clip(np.round(gray * 255.0), 0, 255).astype(np.uint8)
    return pixels_to_images(u8.reshape(SIDE * SIDE))


def predict_vectors(model: Any, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(n, 10)`` of ``model`` for rows ``x`` ``(n, 784)``. Weights
    that overflow give non-finite rows, without NumPy warnings: the caller says so itself."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        logits = to_numpy(model.forward(np.asarray(x), train=False)).astype(np.float64)
        return to_numpy(softmax(logits))


def weights_warning(weights: str | Path) -> str | None:
    """One line of warning when ``weights`` come from a run that diverged or did not learn
    (from the header's ``status``/``diagnosis`` metadata, else from the run record
    ``../runs/<stem>.json`` next to the weights folder); None when nothing says so."""
    path = Path(weights)
    meta = serialize.read_header(path).get("metadata") or {}
    status, labels = meta.get("status"), meta.get("diagnosis")
    if labels is None:
        try:
            record_path = child_path(path.parent.parent / "runs", path.stem, ".json", "run id")
            record = read_json(record_path) if record_path.is_file() else None
            if isinstance(record, dict) and isinstance(record.get("result"), dict):
                status = record["result"].get("status", status)
                labels = diagnose(record["result"]).labels
        except (NumnetError, KeyError, TypeError, ValueError):
            labels = None  # an unreadable record says nothing; the weights still load
    failed = [label for label in (labels or []) if label in FAILED]
    if status == "diverged" and "diverged" not in failed:
        failed.insert(0, "diverged")
    if not failed:
        return None
    run = meta.get("run_id") or path.stem
    return (f"numnet predict: warning: {path} comes from run {run}, which "
            f"{' and '.join('diverged' if f == 'diverged' else 'did not learn' for f in failed)}"
            "; its predictions are no better than chance")


def predict_files(weights: str | Path, images: list[str | Path], method: str = "auto",
                  warn: Callable[[str], None] | None = stderr_log) -> list[Prediction]:
    """Load ``weights`` (numnet.core.serialize) and classify each image file; ``warn`` (one
    line on stderr by default; None: silent) gets :func:`weights_warning`'s line if any."""
    model = serialize.load(weights)
    for name, p in model.named_parameters():
        if not np.isfinite(to_numpy(p.value)).all():
            raise WeightsFileError(
                f"{weights}: parameter '{name}' holds NaN or infinite values (the run that "
                "saved it diverged); retrain with a smaller learning rate")
    if warn is not None and (line := weights_warning(weights)) is not None:
        warn(line)
    x = np.stack([image_to_vector(p, method) for p in images])
    probs = predict_vectors(model, x)
    if not np.isfinite(probs).all():  # finite weights can still overflow on an input
        bad = [str(p) for p, row in zip(images, probs, strict=True) if not np.isfinite(row).all()]
        raise WeightsFileError(f"{weights}: the model's outputs are not finite for "
                               f"{', '.join(bad)}; these weights cannot classify them")
    return [Prediction(str(p), int(np.argmax(row)), [float(v) for v in row])
            for p, row in zip(images, probs, strict=True)]
