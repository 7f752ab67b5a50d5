"""The example files the demo runs, shipped in the package (`inferops/demo/examples/`).

They are copies of files under the repository's `examples/` folder, the one users read and
edit; a unit test keeps every copy byte-identical to its original. Shipping them as package
data lets `inferops demo` run from any installation (a wheel, the container image), not
only from a source checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from inferops.demo.errors import DemoError

APPLICATION_FILE = "iris-application.yaml"
SERVICE_FILE = "iris-realtime.yaml"
BATCH_FILE = "iris-batch-folder.yaml"
BATCH_DATA = Path("iris") / "data.csv"
MODEL_DIR = Path("iris") / "model"
# Every file shipped, relative to the examples folder (and to the repository's examples/).
SHIPPED: tuple[Path, ...] = (
    Path(APPLICATION_FILE),
    Path(SERVICE_FILE),
    Path(BATCH_FILE),
    BATCH_DATA,
    MODEL_DIR / "config.json",
    MODEL_DIR / "model.json",
)


def examples_dir() -> Path:
    """The shipped examples as a folder on disk (the model server and nginx need paths)."""
    root = files("inferops.demo") / "examples"
    # A package installed as files (a wheel, an editable install) gives a real folder; a
    # zipped one would not, and the model server could not read its model from it.
    if not isinstance(root, Path):
        raise DemoError(f"the demo's examples are not files on disk ({root})")
    missing = [str(p) for p in SHIPPED if not (root / p).is_file()]
    if missing:
        raise DemoError(
            f"the demo's examples are incomplete in {root} (missing: {', '.join(missing)}); "
            "reinstall Inferops"
        )
    return root
