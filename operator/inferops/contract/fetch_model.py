"""`inferops fetch-model` as both planes see it: the init container's argv the operator
writes (`FetchModelOptions.argv`) and the command line `inferops fetch-model` parses
(`add_fetch_model_arguments`, `options_from_args`), defined side by side in one place.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

COMMAND = "fetch-model"
# Where the model files land: the init container writes there and the model container
# mounts the same volume there, read-only.
DEFAULT_DEST = "/mnt/models"


@dataclass(frozen=True)
class FetchModelOptions:
    """What `inferops fetch-model` copies, and where to."""

    source: str
    dest: str = DEFAULT_DEST
    endpoint: str | None = None
    region: str | None = None

    def argv(self) -> list[str]:
        """The container args: `fetch-model SOURCE --dest DEST`, then `--endpoint` and
        `--region` when set. `--dest` is written even at its default so the pod spec shows
        where the files go next to the volume mounted there."""
        args = [COMMAND, self.source, "--dest", self.dest]
        if self.endpoint is not None:
            args += ["--endpoint", self.endpoint]
        if self.region is not None:
            args += ["--region", self.region]
        return args


def add_fetch_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the arguments of `inferops fetch-model` on its (sub)parser."""
    parser.add_argument("source", help="obs://, s3://, https:// or file:// file or folder")
    parser.add_argument("--dest", default=DEFAULT_DEST, help="target folder")
    parser.add_argument("--endpoint", help="S3 API endpoint (default: $INFEROPS_S3_ENDPOINT)")
    parser.add_argument("--region", help="S3 region (default: $AWS_REGION or us-east-1)")


def options_from_args(args: argparse.Namespace) -> FetchModelOptions:
    """The options of a parsed `inferops fetch-model` command line."""
    return FetchModelOptions(
        source=args.source, dest=args.dest, endpoint=args.endpoint, region=args.region
    )
