"""The synchronous API, for scripts: the same names and signatures as ``dicomtls.aio``, no ``await``.

Each association, server or call runs its own event loop on a background thread, and
every method hands a coroutine to it and waits for the result, so blocking code gets
exactly the asyncio implementation's behaviour (timeouts, streaming, errors).
``associate`` and ``serve_dicom`` are made from their asyncio twins, parameters and all;
a test holds the classes to the same methods (tests/test_front_door.py).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar, overload

from dicomtls.dimse.transfer_syntax import STORAGE_TRANSFER_SYNTAXES
from dicomtls.net import association as _async
from dicomtls.net import client as _client
from dicomtls.net import scp as _scp
from dicomtls.net.hooks import StoreTarget
from dicomtls.net.qr_scu import QueryModel, RetrieveResult, StopWhen
from dicomtls.tls.session import SessionInfo
from dicomtls.ul.acse import Negotiated, Proposal

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Association", "DicomServer", "Peer", "associate", "serve_dicom"]

T = TypeVar("T")
P = ParamSpec("P")
Inner = TypeVar("Inner")  # what the asyncio API opened
H = TypeVar("H")  # the blocking handle on it


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

    def run_last(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run the last coroutine this loop will see, then stop it, whatever happened."""
        try:
            return self.run(coroutine)
        finally:
            self.stop()


def _once(name: str, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a loop of its own (safe from inside someone else's loop)."""
    return _LoopThread(name).run_last(coroutine)


def _opened(
    name: str, coroutine: Coroutine[Any, Any, Inner], handle: Callable[[_LoopThread, Inner], H]
) -> H:
    """Run ``coroutine`` (it opens an association or a server) on a loop of its own, which
    stays for the blocking ``handle`` on what it opened; if it fails, the loop goes too."""
    runner = _LoopThread(name)
    try:
        return handle(runner, runner.run(coroutine))
    except BaseException:
        runner.stop()
        raise


def _blocking(
    start: Callable[P, Coroutine[Any, Any, Inner]], handle: Callable[[_LoopThread, Inner], H]
) -> Callable[P, H]:
    """The blocking twin of the asyncio function ``start``: its parameters and docstring,
    returning a ``handle`` whose methods run on the loop ``start`` ran on."""

    @functools.wraps(start, assigned=("__name__", "__qualname__", "__doc__"))
    def blocking(*args: P.args, **kwargs: P.kwargs) -> H:
        return _opened(f"dicomtls {start.__name__}", start(*args, **kwargs), handle)

    return blocking


class _Handle(Generic[Inner]):
    """A blocking handle on what the asyncio API opened, whose loop runs on ``runner``."""

    def __init__(self, runner: _LoopThread, inner: Inner) -> None:
        self._runner = runner
        self._inner = inner


class _Forwarded(Generic[T]):
    """A read-only attribute of a :class:`_Handle`: the one of that name on the asyncio
    object it wraps, read when asked, so it never goes stale."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, handle: None, owner: type) -> _Forwarded[T]: ...
    @overload
    def __get__(self, handle: _Handle[Any], owner: type) -> T: ...
    def __get__(self, handle: _Handle[Any] | None, owner: type) -> Any:
        if handle is None:  # looked up on the class (help, inspect)
            return self
        return getattr(handle._inner, self._name)

    def __set__(self, handle: object, value: NoReturn) -> NoReturn:
        raise AttributeError(f"{self._name!r} is read-only: the asyncio object's own")


class Association(_Handle[_async.Association]):
    """A blocking association: what :class:`dicomtls.aio.Association` offers, without ``await``.

    ``cancel`` may be called from another thread while ``find``, ``move`` or ``get`` runs.
    """

    negotiated = _Forwarded[Negotiated]()
    session = _Forwarded[SessionInfo | None]()
    """The negotiated TLS parameters, None on plain TCP."""
    peer = _Forwarded[str]()
    calling_ae = _Forwarded[str]()
    called_ae = _Forwarded[str]()
    peer_max_pdu_length = _Forwarded[int]()
    last_message_id = _Forwarded[int]()
    ended = _Forwarded[bool]()
    end_reason = _Forwarded[str | None]()

    @property
    def dimse_timeout(self) -> float | None:
        return self._inner.dimse_timeout

    @dimse_timeout.setter
    def dimse_timeout(self, seconds: float | None) -> None:
        self._inner.dimse_timeout = seconds

    @property
    def max_find_memory(self) -> int:
        return self._inner.max_find_memory

    @max_find_memory.setter
    def max_find_memory(self, limit: int) -> None:
        self._inner.max_find_memory = limit

    def echo(self) -> int:
        return self._runner.run(self._inner.echo())

    def store(self, path: Path) -> int:
        return self._runner.run(self._inner.store(Path(path)))

    def store_many(self, paths: Iterable[Path]) -> list[tuple[Path, int | Exception]]:
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
        self,
        identifier: Dataset,
        target: StoreTarget,
        model: QueryModel = QueryModel.STUDY_ROOT,
        *,
        stop_when: StopWhen | None = None,
    ) -> RetrieveResult:
        return self._runner.run(self._inner.get(identifier, target, model, stop_when=stop_when))

    def cancel(self, message_id: int) -> None:
        self._runner.run(self._inner.cancel(message_id))

    def release(self) -> None:
        self._runner.run_last(self._inner.release())

    def abort(self) -> None:
        self._runner.run_last(self._inner.abort())

    def __enter__(self) -> Association:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()


associate = _blocking(_async.associate, Association)
"""Blocking :func:`dicomtls.aio.associate`."""


class DicomServer(_Handle[_scp.DicomServer]):
    """A blocking handle on a running SCP; ``close`` lets running transfers finish."""

    port = _Forwarded[int]()
    limits = _Forwarded[_scp.Limits]()

    @property
    def active(self) -> dict[str, int]:
        """Associations in progress, per peer address."""
        return dict(self._inner.active)

    def close(self) -> None:
        self._runner.run_last(self._inner.close())

    def __enter__(self) -> DicomServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


serve_dicom = _blocking(_scp.serve_dicom, DicomServer)
"""Blocking :func:`dicomtls.aio.serve_dicom`: returns once the server listens."""


@dataclass(frozen=True)
class Peer(_client.PeerAddress):
    """A remote application entity: each call opens its own association with the contexts
    it needs (:class:`dicomtls.aio.Peer`, without ``await``)."""

    def _aio(self) -> _client.Peer:
        return _client.Peer(**vars(self.address()))

    def _call(self, what: str, coroutine: Coroutine[Any, Any, T]) -> T:
        return _once(f"dicomtls {what} to {self.host}:{self.port}", coroutine)

    def associate(self, proposals: Sequence[Proposal], *, max_operations: int = 1) -> Association:
        """An association of your own, with ``proposals`` (release it when done)."""
        opening = self._aio().associate(proposals, max_operations=max_operations)
        return _opened(f"dicomtls association to {self.host}:{self.port}", opening, Association)

    def echo(self) -> int:
        return self._call("C-ECHO", self._aio().echo())

    def store(
        self, paths: Iterable[Path | str], *, max_operations: int = 16
    ) -> list[tuple[Path, int | Exception]]:
        return self._call("C-STORE", self._aio().store(paths, max_operations=max_operations))

    def find(
        self, identifier: _client.Query, model: QueryModel = QueryModel.STUDY_ROOT
    ) -> list[Dataset]:
        return self._call("C-FIND", self._aio().find(identifier, model))

    def move(
        self, identifier: _client.Query, destination: str, model: QueryModel = QueryModel.STUDY_ROOT
    ) -> RetrieveResult:
        return self._call("C-MOVE", self._aio().move(identifier, destination, model))

    def get(
        self,
        identifier: _client.Query,
        target: StoreTarget | Path | str,
        model: QueryModel = QueryModel.STUDY_ROOT,
        transfer_syntaxes: Sequence[str] = STORAGE_TRANSFER_SYNTAXES,
    ) -> RetrieveResult:
        return self._call("C-GET", self._aio().get(identifier, target, model, transfer_syntaxes))

    def classes_in_study(self, identifier: _client.Query, model: QueryModel) -> list[str]:
        return self._call("C-FIND", self._aio().classes_in_study(identifier, model))
