"""A ServiceObserver hands the SCP one method per service event, named after the event."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dicomtls.net.hooks import RequestInfo, ServiceEvents
from dicomtls.net.link import LinkEvents
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


def test_link_events_chain_too_and_keep_what_only_one_side_observes() -> None:
    told: list[tuple[str, str]] = []
    ours = LinkEvents(on_accepted=lambda peer: told.append(("ours", peer)))
    theirs = LinkEvents(
        on_connected=lambda peer: told.append(("connected", peer)),
        on_accepted=lambda peer: told.append(("theirs", peer)),
    )
    events = chained(ours, theirs)
    assert events.on_accepted is not None and events.on_connected is not None
    assert events.on_refused is None  # nobody listens: the link skips the call
    events.on_accepted("10.0.0.7:4100")
    events.on_connected("10.0.0.8:104")
    assert told == [
        ("ours", "10.0.0.7:4100"),
        ("theirs", "10.0.0.7:4100"),
        ("connected", "10.0.0.8:104"),
    ]
