"""What `helm uninstall`, `helm upgrade` and an Argo CD sync with pruning delete, by the
rules each tool documents, applied to rendered objects:

- Helm (v3 and v4) deletes every object of the release's manifest on uninstall, and every
  object an upgrade no longer renders, except those annotated
  `helm.sh/resource-policy: keep`. Files in a chart's crds/ are never in the manifest:
  Helm installs them once and never upgrades or deletes them.
- Argo CD, with `prune: true`, deletes the objects it tracks that Git no longer has,
  except those whose `argocd.argoproj.io/sync-options` include `Prune=false`; deleting an
  Application with its resources-finalizer deletes what it tracks, except those with
  `Delete=false`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

HELM_POLICY = "helm.sh/resource-policy"
ARGOCD_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"

Object = Mapping[str, Any]


def key(obj: Object) -> tuple[str, str, str | None, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"].split("/")[0], obj["kind"], meta.get("namespace"), meta["name"])


def _annotations(obj: Object) -> Mapping[str, str]:
    return obj["metadata"].get("annotations") or {}


def helm_keeps(obj: Object) -> bool:
    return _annotations(obj).get(HELM_POLICY) == "keep"


def _argocd_option(obj: Object, option: str) -> bool:
    options = _annotations(obj).get(ARGOCD_SYNC_OPTIONS, "")
    return option in (item.strip() for item in options.split(","))


def argocd_never_prunes(obj: Object) -> bool:
    return _argocd_option(obj, "Prune=false")


def argocd_app_deletion_deletes(live: Iterable[Object]) -> list[Object]:
    return [obj for obj in live if not _argocd_option(obj, "Delete=false")]


def helm_uninstall_deletes(release_manifest: Iterable[Object]) -> list[Object]:
    return [obj for obj in release_manifest if not helm_keeps(obj)]


def helm_upgrade_deletes(before: Iterable[Object], after: Iterable[Object]) -> list[Object]:
    still = {key(obj) for obj in after}
    return [obj for obj in before if key(obj) not in still and not helm_keeps(obj)]


def argocd_prunes(live: Iterable[Object], desired: Iterable[Object]) -> list[Object]:
    wanted = {key(obj) for obj in desired}
    return [obj for obj in live if key(obj) not in wanted and not argocd_never_prunes(obj)]
