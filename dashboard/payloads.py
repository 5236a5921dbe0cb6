"""The JSON bodies of the dashboard's API and events (docs/api.md), built from hub objects."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from hub.jobs import ChunkState, Job
from hub.service import Hub
from hub.transcript import segments, text_of
from protocol.messages import NodeStatus


def _summary(job_id: str, name: str, state: str, created: float, duration_s: float,
             done: int, failed: int, total: int) -> dict[str, Any]:
    return {
        "id": job_id,
        "name": name,
        "state": state,
        "created": round(created, 3),
        "duration_s": round(duration_s, 3),
        "progress": {"done": done, "failed": failed, "total": total},
    }


def summary(job: Job) -> dict[str, Any]:
    return _summary(job.id, job.name, job.state.value, job.created, job.duration_s,
                    job.count(ChunkState.DONE), job.count(ChunkState.FAILED), len(job.chunks))


def summary_of_row(row: dict[str, Any]) -> dict[str, Any]:
    """The same summary from a row of :meth:`hub.service.Hub.summaries`."""
    return _summary(row["id"], row["name"], row["state"], row["created"], row["duration_s"],
                    row["done"], row["failed"], row["total"])


def detail(job: Job, with_segments: bool = True) -> dict[str, Any]:
    """GET /api/jobs/<id>; the ``job`` event is this without ``segments``."""
    body = summary(job)
    segs = segments(job)  # the overlap merge runs once for the text and the segments
    body["error"] = job.error
    body["open"] = job.open  # a stream (a live recording) that may still grow
    body["text"] = text_of(segs)
    body["chunks"] = [
        {
            "seq": c.seq,
            "start_s": round(c.spec.start_ms / 1000, 3),
            "end_s": round(c.spec.end_ms / 1000, 3),
            "state": c.state.value,
            "node_id": c.node_id,
        }
        for c in job.chunks
    ]
    if with_segments:
        body["segments"] = [asdict(s) for s in segs]
    return body


def node(status: NodeStatus, chunks: list[str]) -> dict[str, Any]:
    return {
        "node_id": status.node_id,
        "state": status.state.value,
        "engine": status.engine,
        "model": status.model,
        "capacity": status.capacity,
        "active": status.active,
        "done": status.done,
        "rtf": status.rtf,
        "chunks": chunks,
    }


def nodes(hub: Hub) -> list[dict[str, Any]]:
    """Every node the hub has heard of, by id, with the chunks it holds of this hub's."""
    assigned = hub.assignments()
    return [node(s, assigned.get(s.node_id, [])) for s in sorted(hub.nodes(), key=lambda s: s.node_id)]
