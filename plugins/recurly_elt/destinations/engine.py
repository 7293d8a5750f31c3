"""The delivery engine: one for every destination.

deliver() runs one destination, kind by kind:
  0. index     delivered rows an earlier run settled but did not move into load_delivered (ledger.py)
  1. recover   requests an earlier run left `pending` (killed between sending and recording the
               answer): idempotent kinds are simply sent again (their keys were never recorded as
               delivered); kinds the destination does not deduplicate follow the mapping's
               `non_idempotent_policy`: at_most_once marks the batch's keys delivered-uncertain
               and reports the batch, at_least_once sends them again
  2. select    the kind's rows, mapped (records.py); keyless rows are set aside with the reason
  3. diff      against load_delivered: objects are sent when new or when their payload hash
               changed (only the changed fields, where the adapter allows it); `import_only`
               never overwrites an object delivered before; events are sent once, ever; a row
               rejected permanently is not sent again until it changes; `resync_after_days`
               sends an object again, whole, once its last delivery is older than that
  4. batch     groups (records that must travel together) packed within the count and byte limits
  5. send      each batch marked pending (committed) before it is sent; up to `in_flight`
               requests at once on worker threads (one for kinds sent at most once); the answers
               read by the adapter into per-record outcomes and recorded in order on the engine's
               thread, with the pending rows of the next requests, one transaction per round (a
               settled request carries its delivered rows; they move into load_delivered in bulk:
               ledger.py, "Delivered rows"); a whole-batch refusal caused by some rows is split in
               halves until they are isolated
Steps 2-4 of the next kind run on a helper thread while a kind is sent.
The dry run does steps 2-4 only and stores counts and a sample of the request bodies in
load_run_log. Progress goes to the log every `progress_seconds`; each kind ends with one line.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

import sqlalchemy as sa

from recurly_elt.destinations import account_keys, ledger
from recurly_elt.destinations.adapter import Adapter, Answer, Rejected, Request
from recurly_elt.destinations.mapping import Kind, Mapping
from recurly_elt.destinations.records import Record, encode, piece, select
from recurly_elt.destinations.transport import GaveUp, Sent, Transport, Unreadable
from recurly_elt.http_retry import detached

log = logging.getLogger(__name__)

# Delivered rows moved from the settled requests into load_delivered once this many wait (and at
# the end of each kind): see "Delivered rows" in ledger.py.
INDEX_EVERY_ROWS = 50_000

# Requests of one kind in flight at once: enough to keep the destination busy while this thread
# writes the ledger and builds the next request, few enough that a crash resends little.
IN_FLIGHT = 4


@dataclass
class KindCounts:
    considered: int = 0
    unchanged: int = 0
    creates: int = 0
    updates: int = 0
    resynced: int = 0      # updates of unchanged objects, sent again by resync_after_days
    events: int = 0
    sent: int = 0          # records the destination accepted
    rejected: int = 0      # records the destination refused (this run)
    skipped: int = 0       # set aside before sending (see skipped_reasons)
    failed: int = 0        # records of batches whose retries ran out (retried next run)
    requests: int = 0      # delivery requests (a split counts each half)
    polls: int = 0         # follow-up requests of asynchronous jobs
    batches: int = 0
    min_requests: int = 0  # what the batch limits allow for the records to send
    skipped_reasons: dict = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped += n
            self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + n


@dataclass
class DeliveryResult:
    run_id: str
    destination: str
    mode: str
    dry_run: bool
    status: str = "running"
    kinds: dict[str, KindCounts] = field(default_factory=dict)
    uncertain_batches: list[str] = field(default_factory=list)
    sample: dict = field(default_factory=dict)
    seconds: float = 0.0
    status_429: int = 0
    retries: int = 0
    error: str | None = None

    def total(self, name: str) -> int:
        return sum(getattr(k, name) for k in self.kinds.values())

    def counts(self) -> dict[str, int]:
        names = ("considered", "unchanged", "creates", "updates", "events", "sent", "rejected", "skipped",
                 "requests", "polls")
        out = {n: self.total(n) for n in names}
        out.update(status_429=self.status_429, retries=self.retries, uncertain_batches=len(self.uncertain_batches))
        return out

    def lines(self) -> list[str]:
        out = []
        for name, k in self.kinds.items():
            verb = "would send" if self.dry_run else "sent"
            sent = k.creates + k.updates + k.events if self.dry_run else k.sent
            out.append(f"{self.destination} {name}: considered {k.considered}, unchanged {k.unchanged}, {verb} "
                       f"{sent} (creates {k.creates}, updates {k.updates}"
                       + (f" of which re-synced {k.resynced}" if k.resynced else "")
                       + f", events {k.events}), rejected "
                       f"{k.rejected}, skipped {k.skipped}, requests {k.requests}"
                       + (f", failed {k.failed}" if k.failed else ""))
        if self.uncertain_batches:
            out.append(f"{self.destination}: {len(self.uncertain_batches)} uncertain batch(es), not resent "
                       f"(at most once): {', '.join(self.uncertain_batches)}")
        return out

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "destination": self.destination, "dry_run": self.dry_run,
                "status": self.status, **self.counts(),
                "kinds": {n: asdict(k) for n, k in self.kinds.items()}}


class DeliveryIncomplete(RuntimeError):
    """Some batches ran out of retries: their rows are in load_rejections (retryable) and the next
    run sends them; the task should fail so Airflow retries it."""


def deliver(engine: sa.Engine, mapping: Mapping, adapter: Adapter, transport: Transport | None, *,
            run_id: str, dry_run: bool = False, backfill: bool = False, mode: str | None = None,
            kinds: list[str] | None = None, now: datetime | None = None, progress_seconds: float = 10.0,
            before_settle: Callable[[str], None] | None = None, in_flight: int = IN_FLIGHT) -> DeliveryResult:
    """Deliver one destination. `transport` may be None for a dry run. `before_settle(batch_id)`
    is called between an answer and its ledger write (tests kill the process there). `in_flight`:
    requests of one kind sent at once (kinds sent at most once: always 1)."""
    mode = mode or mapping.mode
    ledger.ensure_ledger(engine)
    result = DeliveryResult(run_id=run_id, destination=mapping.destination, mode=mode, dry_run=dry_run)
    started = time.perf_counter()
    with _write(engine) as conn:
        ledger.start_run(conn, run_id, mapping.destination, mode, dry_run, backfill)
    with engine.connect() as conn:
        keys = account_keys.resolve(conn, mapping)
    log.info("%s: Recurly accounts keyed by %s", mapping.destination, keys.label)
    run = _Run(engine, mapping, adapter, transport, result, run_id=run_id, dry_run=dry_run, backfill=backfill,
               mode=mode, now=now or ledger.utcnow(), progress_seconds=progress_seconds, before_settle=before_settle,
               keys=keys, in_flight=max(1, int(in_flight)))
    try:
        with _cyclic_gc_paused():
            run.index_earlier()
            if not dry_run:
                run.recover()
            run.run_kinds([kind for kind in mapping.kinds if kinds is None or kind.name in kinds])
        result.status = "incomplete" if result.total("failed") else "success"
    except BaseException as exc:
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        result.seconds = time.perf_counter() - started
        if transport is not None:
            result.status_429, result.retries = transport.counters.status_429, transport.counters.retries
        try:
            with _write(engine) as conn:
                ledger.finish_run(conn, run_id, mapping.destination, status=result.status, counts=result.counts(),
                                  seconds=result.seconds, kinds={n: asdict(k) for n, k in result.kinds.items()},
                                  uncertain=result.uncertain_batches, sample=result.sample if dry_run else None,
                                  error=result.error)
        except Exception:  # the run's own error matters more than its log row
            log.exception("could not write load_run_log for %s %s", mapping.destination, run_id)
    for line in result.lines():
        log.info("%s", line)
    return result


@contextmanager
def _cyclic_gc_paused():
    """CPython's automatic cycle collection off for the delivery, back on (as it was) after it.

    A delivery holds hundreds of thousands of records at once (payload dicts, wire objects,
    encoded pieces) for its whole length; the automatic collector walks every one of them at each
    full collection, and full collections come as that live set grows: about a fifth of the
    client's CPU time of a 100,000-account first import (docs/benchmarks.md, "The cycle collector
    and the ledger's writes"). Nothing a delivery makes per record or per request is held in a
    reference cycle, so reference counting frees it all as it goes: the records, and each request
    and its body once its answer is settled (the retry policy leaves no cycle: http_retry.py; nor
    does an error kept with an answer: detached). The few cycles a delivery makes once, not per
    request, wait for the collector's return. Process-wide: a second delivery running at the same
    time in the same process finds it off and leaves it so."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _write(engine: sa.Engine):
    from recurly_elt.warehouse.engine import write_transaction

    return write_transaction(engine)


_DECODER = None


def _decoded(payload_json: str | None) -> dict:
    if not payload_json:
        return {}
    global _DECODER
    if _DECODER is None:
        import msgspec

        _DECODER = msgspec.json.Decoder(float_hook=Decimal)
    return _DECODER.decode(payload_json)


def changed_fields(previous: dict, payload: dict) -> dict:
    """The fields whose value differs from what was delivered, and null for fields no longer mapped."""
    out = {k: v for k, v in payload.items() if k not in previous or encode(previous[k]) != encode(v)}
    out.update({k: None for k in previous if k not in payload})
    return out


class _Run:
    def __init__(self, engine, mapping: Mapping, adapter: Adapter, transport: Transport | None,
                 result: DeliveryResult, *, run_id, dry_run, backfill, mode, now, progress_seconds, before_settle,
                 in_flight, keys: account_keys.AccountKeys | None = None):
        self.engine, self.mapping, self.adapter, self.transport = engine, mapping, adapter, transport
        self.result, self.run_id, self.dry_run, self.backfill, self.mode = result, run_id, dry_run, backfill, mode
        self.now, self.progress_seconds, self.before_settle = now, progress_seconds, before_settle
        self.in_flight, self.keys = in_flight, keys
        self.pool: ThreadPoolExecutor | None = None
        self.token = uuid.uuid4().hex[:8]
        self.rejected_kinds: set[str] = set()  # kinds with rows in load_rejections (clear them on delivery)
        self.seq = 0
        self.unindexed: list[ledger.Unindexed] = []  # settled, their delivered rows not yet in load_delivered
        self.unindexed_rows = 0  # the rows of self.unindexed, counted as they come
        self.prepared = False
        self.dest = mapping.destination

    # -- 1. recover -------------------------------------------------------------------------------
    def index_earlier(self) -> None:
        """Delivered rows an earlier run settled but did not move into load_delivered (killed in
        between): moved first, so this run, dry or not, reads a complete ledger."""
        with _write(self.engine) as conn:
            moved = ledger.index_unindexed(conn, self.dest)
        if moved:
            log.warning("%s: an earlier run ended before moving %d delivered rows into load_delivered; moved now "
                        "from its settled requests", self.dest, moved)

    def recover(self) -> None:
        with _write(self.engine) as conn:
            pending = ledger.pending_batches(conn, self.dest)
            for batch in pending:
                try:
                    kind = self.mapping.kind(batch["kind"])
                except KeyError:
                    ledger.close_pending(conn, self.dest, batch["run_id"], batch["batch_id"], "failed",
                                         f"interrupted; kind {batch['kind']!r} is no longer mapped")
                    continue
                resend = self.adapter.idempotent(kind) or self.mapping.non_idempotent_policy == "at_least_once"
                if resend:
                    ledger.close_pending(conn, self.dest, batch["run_id"], batch["batch_id"], "failed",
                                         f"interrupted before its answer was recorded; resent by run {self.run_id}")
                    log.warning("%s: batch %s (%s, %d records) was interrupted; its records are sent again",
                                self.dest, batch["batch_id"], kind.name, batch["records"])
                    continue
                keys = json.loads(batch["object_keys"])
                ledger.record_delivered(conn, self.dest, kind.name, batch["run_id"],
                                        [{"object_key": k, "payload_hash": "uncertain"} for k in keys],
                                        batch_id=batch["batch_id"], uncertain=True)
                ledger.close_pending(conn, self.dest, batch["run_id"], batch["batch_id"], "uncertain",
                                     "interrupted before its answer was recorded; policy at_most_once: "
                                     f"not resent (found by run {self.run_id})")
                self.result.uncertain_batches.append(batch["batch_id"])
                log.warning("%s: batch %s (%s, %d records) was interrupted before its answer was recorded; "
                            "the destination may or may not hold them; policy at_most_once: marked uncertain, "
                            "not resent", self.dest, batch["batch_id"], kind.name, batch["records"])

    # -- 2.-4. select, diff, batch ----------------------------------------------------------------
    def run_kinds(self, kinds: list[Kind]) -> None:
        """Kind by kind, in the mapping's order. The next kind is selected, diffed and packed on a
        helper thread while this one is sent, so a rate limit's window is not left idle while it is
        read (reading is the engine's; it writes only the rows it sets aside)."""
        reader = ThreadPoolExecutor(1, thread_name_prefix=f"load-{self.dest}-read")
        self.pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix=f"load-{self.dest}-send")
        try:
            ahead = reader.submit(self.prepare_kind, kinds[0]) if kinds else None
            for i, kind in enumerate(kinds):
                batches, counts = ahead.result()
                ahead = reader.submit(self.prepare_kind, kinds[i + 1]) if i + 1 < len(kinds) else None
                if not self.dry_run:
                    self.send_all(kind, batches, counts)
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            self.pool.shutdown(wait=True, cancel_futures=True)

    def prepare_kind(self, kind: Kind) -> tuple[list, "KindCounts"]:
        """Select, diff and pack one kind: its batches (a dry run also keeps a sample body)."""
        counts = self.result.kinds.setdefault(kind.name, KindCounts())
        with self.engine.connect() as conn:
            selection = select(conn, kind, now=self.now, max_age_days=self.mapping.event_max_age_days,
                               backfill=self.backfill,
                               exclude_delivered=(self.dest, kind.name) if kind.is_event else None,
                               account_keys=self.keys)
            previous = {} if kind.is_event else ledger.delivered(conn, self.dest, kind.name)
            refused = ledger.rejections(conn, self.dest, kind.name)
        if refused or selection.set_aside:
            self.rejected_kinds.add(kind.name)
        counts.considered = selection.considered + selection.held_historical
        counts.skip(f"events older than {self.mapping.event_max_age_days} days (not a backfill)",
                    selection.held_historical)
        counts.skip("set aside before sending (see load_rejections)", len(selection.set_aside))
        if selection.set_aside and not self.dry_run:
            with _write(self.engine) as conn:
                ledger.record_rejections(conn, self.dest, kind.name, self.run_id, [
                    {"object_key": s.key, "payload_hash": None, "reason": s.reason, "retryable": False}
                    for s in selection.set_aside])
        stale = self.stale(kind, previous)
        partial = bool(kind.options.get("partial_updates", True))
        is_event = kind.is_event
        to_send: list[Record] = []
        for record in selection.records:
            before = previous.get(record.key)
            resync = record.key in stale
            if before is not None and before.payload_hash == record.hash and not resync:
                counts.unchanged += 1
                continue
            if before is not None and self.mode == "import_only":
                counts.skip("import_only: imported before, never overwritten")
                continue
            rejection = refused.get(record.key)
            if rejection is not None and not rejection[1] and rejection[0] == record.hash:
                counts.skip("rejected before and unchanged")
                continue
            if is_event:
                counts.events += 1
            elif before is None:
                counts.creates += 1
            else:
                counts.updates += 1
                record.is_update = True
                if resync:  # the whole object, to overwrite what was changed at the destination
                    counts.resynced += 1
                elif partial:
                    record.changed = changed_fields(_decoded(before.payload), record.payload)
            to_send.append(record)
        batches = self.pack(kind, to_send)
        counts.min_requests = self.min_requests(kind, batches)
        if self.dry_run:
            counts.batches = len(batches)
            if batches:
                first = batches[0][: self.mapping.sample_size]
                request = self.adapter.build_request(kind, [w for _, ws, _ in first for w in ws],
                                                     [r for g, _, _ in first for r in g], self._options())
                self.result.sample[kind.name] = json.loads(request.body) if request.body else None
        return batches, counts

    def stale(self, kind: Kind, previous: dict[str, ledger.Delivered]) -> set[str]:
        """Objects to send again though unchanged: last delivered more than `resync_after_days` ago
        (by the wall clock, so reruns and backfills of the same day resend nothing), from the
        ledger rows already read (`previous`). Daily sync only."""
        days = kind.resync_after_days if kind.resync_after_days is not None else self.mapping.resync_after_days
        if not days or kind.is_event or self.mode == "import_only":
            return set()
        cutoff = ledger.utcnow() - timedelta(days=days)
        return {key for key, row in previous.items() if row.delivered_at < cutoff}

    def _options(self) -> dict:
        return {"backfill": self.backfill, "mode": self.mode}

    def pack(self, kind: Kind, records: list[Record]) -> list[list[tuple[list[Record], list, int]]]:
        """Batches of groups [(records, encoded wire objects, bytes)], each within the kind's limits.
        A group that does not fit waits for the next batch while later, smaller groups fill this one."""
        groups: dict[tuple, list[Record]] = {}
        if kind.group_by:
            for r in records:
                groups.setdefault(r.group, []).append(r)
            group_list = list(groups.values())
        else:
            group_list = [[r] for r in records]
        limit_n, limit_b = kind.max_records, kind.max_bytes - self.adapter.envelope_bytes(kind)
        units = []
        for group in group_list:
            for i in range(0, len(group), limit_n):  # a group over the count limit is cut
                units.append(self._unit(kind, group[i:i + limit_n]))
        batches, current, n, b = [], [], 0, 0
        waiting: list = []
        for unit in units:
            if unit[2] > limit_b:  # one object over the byte limit: sent alone, the API will say
                batches.append([unit])
                continue
            if n + len(unit[0]) <= limit_n and b + unit[2] <= limit_b:
                current.append(unit)
                n, b = n + len(unit[0]), b + unit[2]
            else:
                waiting.append(unit)
            if n == limit_n or (waiting and len(waiting) > 64):
                batches.append(current)
                current, n, b = [], 0, 0
                while waiting and n + len(waiting[0][0]) <= limit_n and b + waiting[0][2] <= limit_b:
                    u = waiting.pop(0)
                    current.append(u)
                    n, b = n + len(u[0]), b + u[2]
        while waiting:
            if current and (n + len(waiting[0][0]) > limit_n or b + waiting[0][2] > limit_b):
                batches.append(current)
                current, n, b = [], 0, 0
            u = waiting.pop(0)
            current.append(u)
            n, b = n + len(u[0]), b + u[2]
        if current:
            batches.append(current)
        return batches

    def min_requests(self, kind: Kind, batches) -> int:
        records = sum(len(g) for batch in batches for g, _, _ in batch)
        size = sum(s for batch in batches for _, _, s in batch)
        limit_b = kind.max_bytes - self.adapter.envelope_bytes(kind)
        return max(math.ceil(records / kind.max_records), math.ceil(size / limit_b)) if records else 0

    # -- 5. send ----------------------------------------------------------------------------------
    def send_all(self, kind: Kind, batches, counts: KindCounts) -> None:
        """Send the kind's batches with up to `in_flight` requests at once (worker threads), the
        ledger written on this thread, in order, in one transaction per round: the outcomes of the
        requests answered since the last write and the `pending` rows of the requests about to go
        (committed before they are sent). Kinds sent at most once keep one request in flight, so a
        crash leaves at most one batch whose fate is uncertain, as with a single request."""
        total = sum(len(g) for batch in batches for g, _, _ in batch)
        once = not self.adapter.idempotent(kind) and self.mapping.non_idempotent_policy == "at_most_once"
        depth = 1 if once else self.in_flight
        waiting: deque = deque(([r for g, _, _ in b for r in g], [w for _, ws, _ in b for w in ws],
                                sum(s for _, _, s in b)) for b in batches)
        flying: deque[_Batch] = deque()
        started = last = time.perf_counter()
        done = 0
        while waiting or flying:
            finished: list[_Batch] = []
            if flying:
                flying[0].future.result()  # in order: wait for the oldest, take whatever else is answered
                while flying and flying[0].future.done():
                    finished.append(flying.popleft())
            writes: list[Callable[[sa.Connection], None]] = []
            for batch in finished:
                writes.extend(self._outcome(kind, batch, batch.future.result(), counts, waiting, once))
                done += len(batch.records)
            starting: list[_Batch] = []
            # refill when half the window is free (or it is empty): each transaction then settles
            # and marks several requests, while at least half of them stay in flight
            if not flying or depth - len(flying) >= max(1, depth // 2):
                while waiting and len(flying) + len(starting) < depth:
                    starting.append(self._new_batch(kind, *waiting.popleft(), counts))
            if self.before_settle is not None:
                for batch in finished:
                    self.before_settle(batch.batch_id)
            # The bulk move is a write of its own, which can fail: done before the next requests
            # are marked pending, never between their pending commit and their sending (a batch
            # of an at-most-once kind left pending is never sent again).
            self.index(at_least=INDEX_EVERY_ROWS)
            if writes or starting:
                with _write(self.engine) as conn:
                    for write in writes:
                        write(conn)
                    if starting:
                        ledger.mark_pending_many(conn, self.dest, self.run_id, kind.name,
                                                 [(b.batch_id, [r.key for r in b.records], b.size) for b in starting])
            for batch in starting:
                if depth == 1:  # one at a time: sent on this thread, no hand-over to a worker
                    batch.future = Future()
                    batch.future.set_result(self._exchange(kind, batch, once))
                else:
                    batch.future = self.pool.submit(self._exchange, kind, batch, once)
                flying.append(batch)
            now = time.perf_counter()
            if now - last >= self.progress_seconds:
                last = now
                log.info("%s %s: %d/%d records, %d requests, %.0f records/s, rejected %d so far",
                         self.dest, kind.name, done, total, counts.requests, done / max(now - started, 1e-9),
                         counts.rejected)
        self.index()

    def _new_batch(self, kind: Kind, records: list[Record], wires: list, size: int, counts: KindCounts) -> "_Batch":
        if not self.prepared:
            self.adapter.prepare(self.transport)
            self.prepared = True
            if self.keys is not None and self.keys.changed:  # the destination is keyed from now on
                with _write(self.engine) as conn:
                    account_keys.record(conn, self.mapping, self.keys, self.run_id)
        self.seq += 1
        counts.requests += 1
        counts.batches += 1
        return _Batch(f"{kind.name}-{self.token}-{self.seq:05d}", records, size,
                      self.adapter.build_request(kind, wires, records, self._options()))

    def _exchange(self, kind: Kind, batch: "_Batch", once: bool) -> "_Exchange":
        """On a worker thread: send one batch (and follow its job), read the answer. Only the
        transport and the adapter's readers run here; the ledger is the engine thread's."""
        out = _Exchange()
        try:
            answer, sent = self.transport.retry_read(
                batch.request, lambda response: self.adapter.read_answer(kind, batch.records, response),
                resend_uncertain=not once)
            while answer.job is not None:
                job = answer.job
                time.sleep(job.wait)
                out.polls += 1
                answer, sent = self.transport.retry_read(
                    job.request, lambda response, job=job: self.adapter.read_job(kind, batch.records, job, response))
        except GaveUp as exc:  # Unreadable included
            out.error = detached(exc)  # its frames hold this batch, whose future holds `out`: a cycle
            return out
        out.answer, out.sent = answer, sent
        return out

    def _outcome(self, kind: Kind, batch: "_Batch", out: "_Exchange", counts: KindCounts, waiting: deque,
                 once: bool) -> list[Callable[[sa.Connection], None]]:
        """The ledger writes an answered batch needs; a batch refused because of some of its rows
        puts the rest (or its halves) at the front of `waiting`."""
        records, batch_id = batch.records, batch.batch_id
        counts.polls += out.polls
        if isinstance(out.error, Unreadable) and once:
            return [self._uncertain(kind, batch_id, records, out.error)]
        if out.error is not None:
            exc = out.error
            log.error("%s %s: batch %s of %d records not delivered (%s); they are retried on the next run",
                      self.dest, kind.name, batch_id, len(records), exc)
            return [self._settle(kind, batch_id, records, "failed", exc.status, exc.attempts, 0,
                                 [Rejected(f"not delivered: {exc}", exc.status, retryable=True, index=i)
                                  for i in range(len(records))], None, counts, error=str(exc), failed=True)]
        answer, sent = out.answer, out.sent
        status = sent.response.status
        if answer.whole is not None and answer.split and self.adapter.split_on_refusal(kind):
            named = {r.index for r in answer.rejected if r.index is not None and 0 <= r.index < len(records)}
            if named and len(named) < len(records):  # the answer names the bad rows: reject them, resend the rest
                write = self._settle(kind, batch_id, records, "failed", status, sent.attempts, sent.ms, answer.rejected,
                                     answer.job_id, counts, deliver_rest=False,
                                     error=f"refused as a whole for {len(named)} row(s); the other "
                                           f"{len(records) - len(named)} sent again")
                waiting.appendleft(self._unit(kind, [r for i, r in enumerate(records) if i not in named]))
                return [write]
            if not named and len(records) > 1:  # no row named: halve until the bad rows are isolated
                write = self._settle(kind, batch_id, records, "failed", status, sent.attempts, sent.ms, [],
                                     answer.job_id, counts, deliver_rest=False,
                                     error=f"refused as a whole ({answer.whole.reason}); split in two and sent again")
                half = len(records) // 2
                waiting.appendleft(self._unit(kind, records[half:]))
                waiting.appendleft(self._unit(kind, records[:half]))
                return [write]
        if answer.whole is not None:
            named = {r.index: r for r in answer.rejected if r.index is not None}
            rejected = [named.get(i) or Rejected(answer.whole.reason, answer.whole.http_status or status,
                                                 answer.whole.retryable, i) for i in range(len(records))]
        else:
            rejected = [r if r.http_status else Rejected(r.reason, status, r.retryable, r.index) for r in answer.rejected]
        return [self._settle(kind, batch_id, records, "delivered" if answer.whole is None else "failed", status,
                             sent.attempts, sent.ms, rejected, answer.job_id, counts)]

    def _unit(self, kind: Kind, records: list[Record]) -> tuple[list[Record], list, int]:
        """Records to send again as one batch: (records, encoded wire objects, bytes)."""
        pieces = list(map(piece, self.adapter.wire(kind, records)))
        return records, pieces, sum(map(len, pieces)) + len(pieces)

    def _uncertain(self, kind: Kind, batch_id: str, records: list[Record],
                   exc: Unreadable) -> Callable[[sa.Connection], None]:
        """A request written whose answer was lost (connection closed or reset, read timeout) or
        cannot be read, for a kind sent at most once: the destination may hold the records; they
        are marked delivered-uncertain and the batch reported, not resent."""
        self.result.uncertain_batches.append(batch_id)
        log.warning("%s %s: batch %s of %d records was sent but its answer was lost or unreadable (%s); "
                    "policy at_most_once: marked uncertain, not resent", self.dest, kind.name, batch_id, len(records), exc)

        def write(conn: sa.Connection) -> None:
            ledger.record_delivered(conn, self.dest, kind.name, self.run_id,
                                    [{"object_key": r.key, "payload_hash": r.hash} for r in records],
                                    batch_id=batch_id, uncertain=True)
            ledger.close_pending(conn, self.dest, self.run_id, batch_id, "uncertain",
                                 f"{exc}; policy at_most_once: not resent")
        return write

    def _settle(self, kind: Kind, batch_id: str, records: list[Record], status: str, http_status, attempts: int,
                ms: int, rejected: list[Rejected], job_id, counts: KindCounts, *, error: str | None = None,
                failed: bool = False, deliver_rest: bool = True) -> Callable[[sa.Connection], None]:
        refused = {r.index: r for r in rejected if r.index is not None and 0 <= r.index < len(records)}
        delivered_rows, rejected_rows = [], []
        for i, record in enumerate(records):
            rej = refused.get(i)
            if rej is not None:
                rejected_rows.append({"object_key": record.key, "payload_hash": record.hash, "reason": rej.reason,
                                      "http_status": rej.http_status, "retryable": rej.retryable})
            elif deliver_rest:
                delivered_rows.append({"object_key": record.key, "payload_hash": record.hash,
                                       "payload": None if kind.is_event else encode(record.payload).decode()})
        if rejected_rows:
            self.rejected_kinds.add(kind.name)
        counts.sent += len(delivered_rows)
        if failed:
            counts.failed += len(rejected_rows)
        else:
            counts.rejected += len(rejected_rows)

        def write(conn: sa.Connection) -> None:
            unindexed = ledger.settle(conn, self.dest, self.run_id, batch_id, status=status, http_status=http_status,
                                      attempts=attempts, ms=ms, kind=kind.name, delivered_rows=delivered_rows,
                                      rejected_rows=rejected_rows, job_id=job_id, error=error)
            if unindexed is not None:
                self.unindexed.append(unindexed)
                self.unindexed_rows += len(unindexed.rows)
        return write

    def index(self, at_least: int = 1) -> None:
        """Move the delivered rows of the requests settled so far into load_delivered, once at least
        `at_least` wait (ledger.py, "Delivered rows")."""
        if self.unindexed_rows < at_least:
            return
        with _write(self.engine) as conn:
            ledger.index_delivered(conn, self.dest, self.unindexed, clear_rejections=self.rejected_kinds)
        self.unindexed, self.unindexed_rows = [], 0


@dataclass
class _Batch:
    """One request of a kind: what it carries, the request built, its worker's future."""

    batch_id: str
    records: list[Record]
    size: int
    request: Request
    future: Future | None = None


@dataclass
class _Exchange:
    """What a worker thread brings back: the final answer (and the exchange that gave it), or why
    there is none."""

    answer: Answer | None = None
    sent: Sent | None = None
    polls: int = 0
    error: GaveUp | None = None
