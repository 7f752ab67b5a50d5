"""Reference models served by `inferops model-server`.

A model directory holds the app's `config.json` (its `apis`) and `model.json`, whose
`type` picks the implementation: `linear-softmax` (a linear classifier exported from
scikit-learn by examples/iris/train.py) or `image-stats` (statistics of an image file).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inferops.contract.untrusted import UntrustedInputError, load_json

JsonObject = dict[str, Any]


class BadInputError(ValueError):
    """The request does not have the shape the model needs (answered with 400)."""


class Model(Protocol):
    def predict_json(self, body: Any) -> JsonObject: ...

    def predict_file(self, filename: str, content: bytes) -> JsonObject: ...


@dataclass(frozen=True)
class LinearSoftmax:
    """Multinomial logistic regression: class = argmax(softmax(W x + b))."""

    features: Sequence[str]
    classes: Sequence[str]
    coef: Sequence[Sequence[float]]
    intercept: Sequence[float]

    def probabilities(self, x: Sequence[float]) -> list[float]:
        scores = [
            sum(w * v for w, v in zip(row, x, strict=True)) + b
            for row, b in zip(self.coef, self.intercept, strict=True)
        ]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        return [e / total for e in exps]

    def _row(self, item: Any, i: int) -> list[float]:
        if not isinstance(item, Mapping):
            raise BadInputError(
                f"data.req_data[{i}] must be an object of {', '.join(self.features)}"
            )
        row = []
        for name in self.features:
            value = item.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadInputError(f"data.req_data[{i}].{name} must be a number")
            try:
                number = float(value)  # an int beyond float's range overflows
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise BadInputError(f"data.req_data[{i}].{name} must be finite")
            row.append(number)
        return row

    def predict_json(self, body: Any) -> JsonObject:
        data = body.get("data") if isinstance(body, Mapping) else None
        items = data.get("req_data") if isinstance(data, Mapping) else None
        if not isinstance(items, list) or not items:
            raise BadInputError(
                'expected {"data": {"req_data": [{...}, ...]}} with at least one item'
            )
        results = []
        for i, item in enumerate(items):
            probs = self.probabilities(self._row(item, i))
            if not all(math.isfinite(p) for p in probs):  # scores overflowed
                raise BadInputError(f"data.req_data[{i}] has values too large to score")
            best = max(range(len(probs)), key=probs.__getitem__)
            results.append(
                {
                    "predictresult": self.classes[best],
                    "scores": {c: round(p, 6) for c, p in zip(self.classes, probs, strict=True)},
                }
            )
        return {"resp_data": results}

    def predict_file(self, filename: str, content: bytes) -> JsonObject:
        raise BadInputError("this model takes JSON input, not files")


@dataclass(frozen=True)
class ImageStats:
    """Size, mode and mean brightness of an image (a file-input model)."""

    def predict_json(self, body: Any) -> JsonObject:
        raise BadInputError("this model takes an image file as multipart/form-data")

    def predict_file(self, filename: str, content: bytes) -> JsonObject:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(content)) as image:
                image.load()
                gray = image.convert("L")
                histogram = gray.histogram()
                pixels = sum(histogram)
                mean = sum(i * n for i, n in enumerate(histogram)) / pixels if pixels else 0.0
                return {
                    "filename": filename,
                    "format": image.format,
                    "mode": image.mode,
                    "width": image.width,
                    "height": image.height,
                    "mean": round(mean, 4),
                }
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise BadInputError(
                f"{filename or 'the file'} is not a readable image: {exc}"
            ) from None


class ModelError(Exception):
    """The model directory cannot be served."""


def read_json(path: Path) -> Any:
    """A JSON file of the model directory; ModelError says what is wrong with it."""
    try:
        # The model directory comes from the app's modelUri: anyone's files.
        return load_json(path.read_bytes())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
    except UntrustedInputError as exc:
        raise ModelError(f"{path}: invalid JSON: {exc}") from None


def load_model(directory: Path) -> Model:
    path = directory / "model.json"
    spec = read_json(path)
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "linear-softmax":
        try:
            model = LinearSoftmax(
                spec["features"], spec["classes"], spec["coef"], spec["intercept"]
            )
        except KeyError as exc:
            raise ModelError(f"{path}: missing {exc}") from None
        if len(model.coef) != len(model.classes) or any(
            len(row) != len(model.features) for row in model.coef
        ):
            raise ModelError(f"{path}: coef must be classes x features")
        return model
    if kind == "image-stats":
        return ImageStats()
    raise ModelError(f"{path}: unknown model type {kind!r} (linear-softmax or image-stats)")
