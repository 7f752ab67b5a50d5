"""The API client the reconcilers use, made once at start-up."""

from __future__ import annotations

from typing import Any

import kopf

from inferops.reconcile.kube import Kube, new_api_client


@kopf.on.startup()
def make_client(memo: kopf.Memo, **_: Any) -> None:
    memo.kube = Kube(new_api_client())
