"""The synchronous API, for scripts: the same names as the asyncio API, no ``await``.

Each association or server runs its own event loop on a background thread, and
every method hands a coroutine to it and waits for the result, so blocking code
gets exactly the asyncio implementation's behaviour (timeouts, streaming, errors).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydicom.dataset import Dataset

from dicomtls.net import association as _async
from dicomtls.net import scp as _scp
from dicomtls.net.qr_scu import QueryModel, RetrieveResult, StoreTarget
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import AcceptorPolicy, Proposal

__all__ = ["Association", "DicomServer", "associate", "serve_dicom"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running on its own daemon thread until closed."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Association:
    """A blocking association: ``echo``, ``store``, ``find``, ``move``, ``get``, ``release``."""

    def __init__(self, runner: _LoopThread, inner: _async.Association) -> None:
        self._runner = runner
        self._inner = inner

    @property
    def negotiated(self) -> Any:
        return self._inner.negotiated

    @property
    def session(self) -> Any:
        return self._inner.link.session

    def echo(self) -> int:
        return self._runner.run(self._inner.echo())

    def store(self, path: Path | str) -> int:
        return self._runner.run(self._inner.store(Path(path)))

    def store_many(self, paths: Iterable[Path | str]) -> list[tuple[Path, int | Exception]]:
        """Each file with its status (or the error that kept it back), as answers come."""

        async def collect() -> list[tuple[Path, int | Exception]]:
            return [result async for result in self._inner.store_many(Path(p) for p in paths)]

        return self._runner.run(collect())

    def find(self, identifier: Dataset, model: QueryModel = QueryModel.STUDY_ROOT) -> list[Dataset]:
        async def collect() -> list[Dataset]:
            return [match async for match in self._inner.find(identifier, model)]

        return self._runner.run(collect())

    def move(
        self, identifier: Dataset, destination: str, model: QueryModel = QueryModel.STUDY_ROOT
    ) -> RetrieveResult:
        return self._runner.run(self._inner.move(identifier, destination, model))

    def get(
        self, identifier: Dataset, target: StoreTarget, model: QueryModel = QueryModel.STUDY_ROOT
    ) -> RetrieveResult:
        return self._runner.run(self._inner.get(identifier, target, model))

    def release(self) -> None:
        try:
            self._runner.run(self._inner.release())
        finally:
            self._runner.stop()

    def abort(self) -> None:
        try:
            self._runner.run(self._inner.abort())
        finally:
            self._runner.stop()

    def __enter__(self) -> Association:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()


def associate(
    host: str,
    port: int,
    tls: TLSSettings | None,
    *,
    calling_ae: str = "DICOMTLS-SCU",
    called_ae: str = "ANY-SCP",
    proposals: Sequence[Proposal] | None = None,
    max_operations: int = 1,
) -> Association:
    """Blocking :func:`dicomtls.net.association.associate`."""
    runner = _LoopThread(f"dicomtls association to {host}:{port}")
    try:
        inner = runner.run(
            _async.associate(
                host,
                port,
                tls,
                calling_ae=calling_ae,
                called_ae=called_ae,
                proposals=proposals,
                max_operations=max_operations,
            )
        )
    except BaseException:
        runner.stop()
        raise
    return Association(runner, inner)


class DicomServer:
    """A blocking handle on a running SCP; ``close`` lets running transfers finish."""

    def __init__(self, runner: _LoopThread, inner: _scp.DicomServer) -> None:
        self._runner = runner
        self._inner = inner

    @property
    def port(self) -> int:
        return self._inner.port

    def close(self) -> None:
        try:
            self._runner.run(self._inner.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> DicomServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_dicom(
    host: str,
    port: int,
    tls: TLSSettings | None,
    policy: AcceptorPolicy,
    services: _scp.Services | None = None,
    *,
    limits: _scp.Limits | None = None,
) -> DicomServer:
    """Blocking :func:`dicomtls.net.scp.serve_dicom`: returns once the server listens."""
    runner = _LoopThread(f"dicomtls server on {host}:{port}")
    try:
        inner = runner.run(_scp.serve_dicom(host, port, tls, policy, services, limits=limits))
    except BaseException:
        runner.stop()
        raise
    return DicomServer(runner, inner)
