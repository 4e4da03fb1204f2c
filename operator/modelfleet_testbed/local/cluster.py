"""`LocalCluster`: the emulated API server on 127.0.0.1, with the resources this project uses."""

from __future__ import annotations

import base64
import functools
import secrets
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import yaml

from modelfleet.api.crd import crd_documents
from modelfleet_testbed.local.builtin_kinds import BUILTIN_KINDS
from modelfleet_testbed.local.emulator import CRDS, ClusterEmulator
from modelfleet_testbed.local.errors import ApiError
from modelfleet_testbed.local.store import ObjectStore

DEFAULT_NAMESPACES = ("default", "llm")
# kopf's own default, and the one `modelfleet run` uses (the chart creates it too).
PEERING_NAMES = ("default", "modelfleet")
MANAGER = "local-cluster"


def plural_of(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def kopf_peering_crds() -> list[dict[str, Any]]:
    """kopf's peering CRDs, as kopf's docs and this project's chart ship them (the status
    is kopf's, kept whole)."""
    crds = []
    for kind, scope in (("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")):
        plural = plural_of(kind)
        schema = {
            "type": "object",
            "properties": {
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            },
        }
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.kopf.dev"},
                "spec": {
                    "group": "kopf.dev",
                    "scope": scope,
                    "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {"openAPIV3Schema": schema},
                        }
                    ],
                },
            }
        )
    return crds


@functools.cache
def _modelfleet_crds() -> tuple[dict[str, Any], ...]:
    # Generated from the models once per process (the store copies what it stores).
    return tuple(crd_documents())


def register_resources(emulator: ClusterEmulator) -> None:
    """The built-in kinds the project uses, then the CRDs: modelfleet's and kopf's peering,
    stored as CustomResourceDefinition objects and served from them."""
    for builtin in BUILTIN_KINDS:
        emulator.register(
            builtin.resource,
            kind=builtin.kind,
            namespaced=builtin.namespaced,
            subresources=builtin.subresources,
            shortnames=builtin.short_names,
            categories=builtin.categories,
            schema=builtin.schema,
        )
    for crd in [*_modelfleet_crds(), *kopf_peering_crds()]:
        stored = emulator.store.create(CRDS, crd, manager=MANAGER)
        emulator.serve_crd(stored)


def kubeconfig_document(
    url: str, token: str | None, ca_pem: bytes | None = None, namespace: str = "default"
) -> dict:
    user = {"token": token} if token else {}
    cluster: dict[str, str] = {"server": url}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "modelfleet-local", "cluster": cluster}],
        "users": [{"name": "modelfleet-local", "user": user}],
        "contexts": [
            {
                "name": "modelfleet-local",
                "context": {
                    "cluster": "modelfleet-local",
                    "user": "modelfleet-local",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "modelfleet-local",
    }


def self_signed_certificate(directory: Path, name: str = "apiserver") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (kubectl sends tokens only over HTTPS); it is
    its own CA: a client trusts it by taking the certificate as its CA bundle."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "token authentication serves HTTPS and needs the openssl command: "
            "apt-get install openssl, or use LocalCluster(token=None)"
        )
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=modelfleet-local", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


class LocalCluster:
    """The emulated cluster's API server, served on 127.0.0.1 on a free port.

    Without a token it serves plain HTTP with no authentication. With a token
    (`token=""` makes one up) it serves HTTPS with a self-signed certificate that the
    kubeconfig trusts, and answers 401 to requests without `Authorization: Bearer`.

    ```
    async with LocalCluster() as cluster:
        subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig_path, "get", "ns"])
    ```
    """

    def __init__(
        self,
        *,
        namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
        token: str | None = None,
        workdir: Path | None = None,
    ):
        self.namespaces = namespaces
        self.token = secrets.token_urlsafe(24) if token == "" else token
        self.ca_path: Path | None = None
        self._workdir = workdir
        self._own_workdir = False
        self._runner: aiohttp.web.ServerRunner | None = None
        self.emulator = ClusterEmulator()
        self.url = ""
        self.kubeconfig_path = Path()

    @property
    def store(self) -> ObjectStore:
        """In-process access to the objects (what the node agent and tests use)."""
        return self.emulator.store

    async def __aenter__(self) -> Self:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="modelfleet-cluster-"))
            self._own_workdir = True
        register_resources(self.emulator)
        await self.emulator.__aenter__()
        try:
            self._create_initial_objects()
            server = aiohttp.web.Server(self._handle, handler_cancellation=True)
            self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
            await self._runner.setup()
            ssl_context = None
            if self.token:
                cert, key = self_signed_certificate(self._workdir)
                ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ssl_context.load_cert_chain(cert, key)
                self.ca_path = cert
            site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
            await site.start()
            host, port = self._runner.addresses[0][:2]
            self.url = f"{'https' if ssl_context else 'http'}://{host}:{port}"
            self.kubeconfig_path = self._workdir / "kubeconfig"
            ca_pem = self.ca_path.read_bytes() if self.ca_path else None
            document = kubeconfig_document(self.url, self.token, ca_pem)
            self.kubeconfig_path.write_text(yaml.safe_dump(document))
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        self.emulator.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.emulator.__aexit__(None, None, None)
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _create_initial_objects(self) -> None:
        store = self.emulator.store
        for namespace in self.namespaces:
            store.create("v1/namespaces", {"metadata": {"name": namespace}}, manager=MANAGER)
        for peering in PEERING_NAMES:
            store.create(
                "kopf.dev/v1/clusterkopfpeerings",
                {"metadata": {"name": peering}},
                manager=MANAGER,
            )
            for namespace in self.namespaces:
                store.create(
                    "kopf.dev/v1/kopfpeerings",
                    {"metadata": {"name": peering}},
                    namespace=namespace,
                    manager=MANAGER,
                )

    async def _handle(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if self.token and raw_request.headers.get("Authorization") != f"Bearer {self.token}":
            error = ApiError(401, "Unauthorized", reason="Unauthorized")
            return aiohttp.web.json_response(error.to_status(), status=401)
        return await self.emulator(raw_request)
