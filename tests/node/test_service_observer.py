"""A ServiceObserver hands the SCP one method per service event, named after the event."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dicomtls.net.hooks import RequestInfo, ServiceEvents
from dicomtls.node.activity import ServiceObserver, chained


class _Told(ServiceObserver):
    def __init__(self) -> None:
        self.told: list[tuple[str, tuple[Any, ...]]] = []

    def rejected(self, info: RequestInfo, why: str) -> None:
        self.told.append(("rejected", (info, why)))

    def ended(self, association: Any) -> None:
        self.told.append(("ended", (association,)))


def test_every_event_is_answered_by_the_method_of_its_name() -> None:
    observer = _Told()
    events = observer.service_events()
    for f in fields(ServiceEvents):
        method = getattr(events, f.name)
        assert method is not None, f.name
        assert method.__name__ == f.name.removeprefix("on_")
        assert method.__self__ is observer


def test_overridden_events_reach_the_subclass_and_the_rest_do_nothing() -> None:
    first, second = _Told(), _Told()
    events = chained(first.service_events(), second.service_events())
    assert events.on_ended is not None and events.on_queried is not None
    association: Any = "association"  # stands in: the observers only pass it on
    events.on_ended(association)
    events.on_queried(association, association)
    assert first.told == second.told == [("ended", (association,))]
