"""Live updates: job and node changes fanned out to every server-sent event stream.

The hub calls its listeners from its own threads (paho's network thread, ``hub-dispatch``, a request
thread that submits a job). Here they only mark a job or the nodes as changed, under a lock held
for a set insertion, and return: they never block the hub. The ``dashboard-events`` thread turns
the marks into events, reading the hub under its lock briefly (:meth:`hub.service.Hub.job`), and
puts each event on every subscriber's bounded queue. Marks that pile up while it works are merged,
so a busy job costs one event per round, not one per change.

An event goes out only when its body differs from the last one sent for that job or node: a
status heartbeat that changes nothing sends nothing. A new subscriber gets a
``hello`` with the nodes as last sent, in order with the events after it.

A subscriber that falls ``client_queue`` events behind loses what it has not read yet and gets
``resync`` and a fresh ``hello`` instead: it must read the jobs again (docs/api.md).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dashboard import payloads
from hub.jobs import Job
from hub.service import Hub
from protocol.messages import NodeStatus

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    name: str  #: ``hello``, ``job``, ``node`` or ``resync``
    data: dict[str, Any]

    def encode(self) -> str:
        return f"event: {self.name}\ndata: {json.dumps(self.data, separators=(',', ':'), ensure_ascii=False)}\n\n"


class Subscription:
    """One stream's bounded queue of events."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._cond = threading.Condition()
        self._events: deque[Event] = deque()
        self.closed = False

    def put(self, event: Event) -> bool:
        """Queue ``event``; False (nothing queued) if the queue is full."""
        with self._cond:
            if len(self._events) >= self._size:
                return False
            self._events.append(event)
            self._cond.notify()
            return True

    def replace(self, events: list[Event]) -> None:
        """Drop everything queued and queue ``events`` instead."""
        with self._cond:
            self._events.clear()
            self._events.extend(events)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def take(self, timeout: float) -> list[Event] | None:
        """Everything queued, waiting up to ``timeout`` s for something; [] on timeout, None once closed."""
        with self._cond:
            if not self._events and not self.closed:
                self._cond.wait(timeout)
            if self.closed:
                return None
            events = list(self._events)
            self._events.clear()
            return events


class EventFanout:
    """Listens to a hub and feeds every :class:`Subscription`. Lives in ``app.extensions``."""

    def __init__(self, hub: Hub, client_queue: int) -> None:
        self._hub = hub
        self._client_queue = client_queue
        self._marks = threading.Condition()  # guards the marks below
        self._dirty_jobs: dict[str, None] = {}  # ordered set
        self._deleted: dict[str, None] = {}  # jobs deleted since the last round, ordered
        self._dirty_nodes = True  # send the nodes known at start
        self._stopping = False
        self._lock = threading.Lock()  # guards the subscribers and the nodes as last sent
        self._subscribers: set[Subscription] = set()
        self._sent_nodes: dict[str, dict[str, Any]] = {}
        self._sent_jobs: dict[str, dict[str, Any]] = {}  # unfinished jobs as last sent (the events thread's own)
        self._thread = threading.Thread(target=self._run, name="dashboard-events", daemon=True)

    def start(self) -> None:
        self._hub.add_listener(self._on_job)
        self._hub.add_node_listener(self._on_node)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and end every stream (call before the hub stops)."""
        with self._marks:
            self._stopping = True
            self._marks.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            subscribers, self._subscribers = self._subscribers, set()
        for sub in subscribers:
            sub.close()

    # -- hub listeners (hub threads: mark and return) -----------------------------------
    def _on_job(self, job: Job) -> None:
        with self._marks:
            self._dirty_jobs[job.id] = None
            self._dirty_nodes = True  # a job change may move a chunk on or off a node
            self._marks.notify()

    def job_deleted(self, job_id: str) -> None:
        """Tell every stream that ``job_id`` is gone (called by the API once the hub has deleted it)."""
        with self._marks:
            self._deleted[job_id] = None
            self._marks.notify()

    def _on_node(self, status: NodeStatus) -> None:
        with self._marks:
            self._dirty_nodes = True
            self._marks.notify()

    # -- streams ------------------------------------------------------------------------
    def subscribe(self) -> Subscription:
        sub = Subscription(self._client_queue)
        with self._lock:
            if self._stopping:
                sub.close()
                return sub
            sub.put(self._hello())
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _hello(self) -> Event:
        return Event("hello", {"nodes": [self._sent_nodes[k] for k in sorted(self._sent_nodes)]})

    def _publish(self, events: list[Event]) -> None:
        with self._lock:
            for event in events:
                if event.name == "node":
                    self._sent_nodes[event.data["node_id"]] = event.data
            for sub in self._subscribers:
                for i, event in enumerate(events):
                    if not sub.put(event):
                        _LOGGER.warning("an event stream fell %d events behind; it must resync", self._client_queue)
                        # the hello holds every node; only the jobs from here on are still news
                        sub.replace([Event("resync", {}), self._hello(),
                                     *(e for e in events[i:] if e.name in ("job", "deleted"))])
                        break

    # -- the dashboard-events thread -------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._marks:
                while not (self._dirty_jobs or self._deleted or self._dirty_nodes or self._stopping):
                    self._marks.wait()
                if self._stopping:
                    return
                jobs, self._dirty_jobs = list(self._dirty_jobs), {}
                deleted, self._deleted = list(self._deleted), {}
                nodes, self._dirty_nodes = self._dirty_nodes, False
            try:
                self._publish(list(self._events(jobs, nodes, deleted)))
            except Exception:  # noqa: BLE001 - keep the streams alive; the next change tries again
                _LOGGER.exception("could not build dashboard events")

    def _events(self, job_ids: list[str], nodes: bool, deleted: list[str]) -> Iterator[Event]:
        for job_id in deleted:
            self._sent_jobs.pop(job_id, None)
            yield Event("deleted", {"id": job_id})
        for job_id in job_ids:
            job = self._hub.job(job_id)
            if job is None:  # deleted meanwhile
                self._sent_jobs.pop(job_id, None)
                continue
            body = payloads.detail(job, with_segments=False)
            if self._sent_jobs.get(job_id) == body:
                continue
            if job.is_finished:
                self._sent_jobs.pop(job_id, None)
            else:
                self._sent_jobs[job_id] = body
            yield Event("job", body)
        if nodes:
            with self._lock:
                sent = dict(self._sent_nodes)
            for body in payloads.nodes(self._hub):
                if sent.get(body["node_id"]) != body:
                    yield Event("node", body)


def stream(fanout: EventFanout, heartbeat_s: float) -> Iterator[str]:
    """The text of one ``text/event-stream``: ``hello`` first, then events as they come, and a
    comment line after ``heartbeat_s`` without one (which also finds a client that has gone)."""
    sub = fanout.subscribe()
    try:
        while True:
            events = sub.take(heartbeat_s)
            if events is None:  # the dashboard is stopping
                return
            yield "".join(e.encode() for e in events) if events else ": heartbeat\n\n"
    finally:
        fanout.unsubscribe(sub)
