"""``numnet predict``: classify digit images with saved weights.

An image becomes one MNIST-like ``(784,)`` float32 row in [0, 1] (white digit on black):

1. Read with Pillow (which matplotlib already depends on) and converted to grayscale; a
   transparent background is composited onto white first. Images smaller than 28x28 are
   refused.
2. Inverted when the digit is dark on light: decided by the border, whose median brightness
   is the background (MNIST's background is black).
3. Brought to 28x28 by ``method``:

   - ``"mnist"`` (default for images larger than 28x28): as MNIST was made -- crop to the
     digit's bounding box (pixels above 10% of the maximum), scale it so its longer side is 20
     pixels (aspect ratio kept; area averaging when shrinking), and paste it into a 28x28 black
     image so that its centre of mass sits at the centre;
   - ``"area"``: scale the whole image to 28x28 (area averaging), for images that are already
     framed like MNIST, only larger;
   - ``"auto"``: 28x28 images are used as they are (after the inversion), larger ones go
     through ``"mnist"``.

Weights of a run that diverged or did not learn classify no better than chance: before
classifying, :func:`weights_warning` reads the file's header metadata (``status`` and
``diagnosis``, written by ``numnet reproduce``/``train``) or else the run record beside it
(``../runs/<name>.json``) and ``predict_files`` prints one warning line on stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numnet.core import serialize
from numnet.core.backend import to_numpy
from numnet.core.datasets import pixels_to_images
from numnet.core.errors import DataError, NumnetError, WeightsFileError
from numnet.core.io import read_json
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
#: An image whose pixels all lie within this brightness range is uniform: no digit to classify.
UNIFORM_RANGE = 0.05


def load_grayscale(path: str | Path) -> np.ndarray:
    """The image at ``path`` as a ``(H, W)`` float64 array in [0, 1] (0 black, 1 white).

    Refused with a DataError naming the file: unreadable, more than MAX_PIXELS pixels (checked
    from the header, before decoding), smaller than 28x28, or uniform (blank, any size)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size  # from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                raise DataError(
                    f"{path}: image is {width}x{height} pixels, more than numnet predict reads "
                    f"({MAX_PIXELS // 10**6} megapixels); scale it down (a digit needs 28x28)")
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in
                                                     img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an image file") from None
    except Image.DecompressionBombError as exc:  # PIL's own cap, met in the header too
        raise DataError(f"{path}: image is too large to decode ({exc}); scale it down (a "
                        "digit needs 28x28)") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); give a PNG file") from None
    if gray.shape[0] < SIDE or gray.shape[1] < SIDE:
        raise DataError(
            f"{path}: image is {gray.shape[1]}x{gray.shape[0]} pixels; it must be at least "
            f"{SIDE}x{SIDE} (a grayscale digit, like MNIST's)"
        )
    if float(gray.max() - gray.min()) <= UNIFORM_RANGE:
        raise DataError(f"{path}: the image is uniform (every pixel about "
                        f"{float(gray.mean()):.2f}); no digit found, give an image of a digit")
    return gray


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


def mnist_frame(digit: np.ndarray, path: str | Path = "<image>") -> np.ndarray:
    """Crop a white-on-black ``digit`` to its bounding box, fit it in 20x20 and centre its
    mass in 28x28 (MNIST's own normalisation)."""
    peak = float(digit.max())
    if peak <= 0.05:
        raise DataError(f"{path}: the image is blank; no digit found")
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
        gray = mnist_frame(gray, path)
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
        record_path = path.parent.parent / "runs" / f"{path.stem}.json"
        try:
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
