"""The one generic extractor: a resource declaration + a window -> pages -> staging.

For one (site, resource, window) it reads the list sorted by updated_at ascending (the order in
which a record changed during the read moves ahead of the cursor instead of being skipped), 200
records a page, turns the page into staging rows (staging/rows.py: records stay raw bytes; only
those that need changing are decoded into objects), and commits pages in one transaction
together with:
  - the checkpoint of the transaction's last page (the `next` link), so a killed task resumes at
    the next page on retry;
  - the run-log counters.
A transaction holds the pages already fetched when the writer is ready (up to BATCH_RECORDS
records), or a single page when the source is the slower side. The last page's transaction also
completes the window: watermark forward, checkpoint removed, run log `success`.

Threads: one prefetch thread does all the HTTP (list pages, invoice completion), up to
PREFETCH_PAGES ahead of the writer, so pages keep arriving while a batch is written. Converting records to rows is CPU work and stays in the main
thread, before the write lock is taken: in the prefetch thread it competed for the GIL with the
writer's many short database calls (each gives up the GIL and has to win it back), which made the
time spent holding SQLite's single write lock about twice as long.

Child resources (plan add-ons) are read per parent: every parent id from the parent's list, then
the child list of each, with the same window; the checkpoint then also names the parent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Iterator

import sqlalchemy as sa

from recurly_elt.extract.completion import COMPLETIONS
from recurly_elt.extract.progress import Progress
from recurly_elt.extract.window import Window
from recurly_elt.recurly.client import PAGE_SIZE, Page, RecurlyClient, RequestStats, page_bound
from recurly_elt.recurly.errors import RecurlyRequestError, scrub
from recurly_elt.recurly.resources import RESOURCES, Resource
from recurly_elt.staging import quarantine, runlog, state
from recurly_elt.staging.load import dedupe, ensure_staging_tables, loaded_at_text, upsert_page
from recurly_elt.staging.rows import RecordRejected, converter, datetime_text, decode_object, encode_object
from recurly_elt.staging.tables import parse_timestamp
from recurly_elt.warehouse.engine import write_transaction

log = logging.getLogger(__name__)

# Pages are written in batches: one transaction (upsert, snapshots, run log, checkpoint of the
# batch's last page) for the pages already fetched, up to BATCH_RECORDS records. A commit and its
# bookkeeping statements cost about as much as writing a page of rows (SQLite rewrites the same
# index pages into its WAL at every commit), so when pages arrive faster than they are written,
# they are written together; when the source is the slower side (no page waiting), each page is
# written at once, as before. A kill loses at most the batch in memory: those pages were never
# committed, so the retry reads them again, and no committed page is read twice.
BATCH_RECORDS = 2000
# List pages fetched ahead of the writer (about a batch and a half: 200 records, ~1 MB each at most).
PREFETCH_PAGES = 16
# Pages one parent's child list may take (a plan's add-ons): child lists get no HEAD count (one
# more request per parent), so their bound is fixed; cursor loops are caught by the client.
CHILD_MAX_PAGES = 100
# The records a list without a usable Recurly-Total-Records is assumed to hold, for its page bound.
UNCOUNTED_RECORDS = 10_000_000
# Records refused by one read that get a warning of their own (all of them are in extract_quarantine).
LOGGED_REFUSALS = 20


@dataclass
class ExtractResult:
    """Counts only: what a task returns as XCom."""
    site: str
    resource: str
    pages: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    snapshots: int = 0
    quarantined: int = 0
    requests: int = 0
    status_429: int = 0
    retries: int = 0
    seconds: float = 0.0
    resumed_from_page: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Fetched:
    page: Page
    completed: dict[int, dict]  # records changed by a completion: {position in the page: object}
    parent_id: str | None
    last: bool              # the window's last page: its commit completes the window
    stats: RequestStats     # the client's counters once this page (and its completion) was fetched


class _Batch:
    """Converted pages not yet written: they commit together, with the checkpoint of the last one."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.rejected: list[RecordRejected] = []   # records the rules refused: quarantined with the batch
        self.keys: set[str] = set()
        self.page_records: list[int] = []
        self.records = 0
        self.fetched: _Fetched | None = None   # the last page added: its checkpoint is the batch's
        self.last_row: tuple | None = None     # highest (cursor, key) read of the last page's parent: the fallback cursor
        self.max_cursor: str | None = None     # highest cursor of the batch (stored text), for the watermark

    @property
    def pages(self) -> int:
        return len(self.page_records)

    def add(self, fetched: _Fetched, rows: list[tuple], rejected: list[RecordRejected], cursor_at: int,
            key_at: int) -> None:
        self.rows.extend(rows)
        self.rejected.extend(rejected)
        self.keys.update(row[key_at] for row in rows)
        self.page_records.append(len(rows))
        self.records += len(rows)
        if self.fetched is not None and self.fetched.parent_id != fetched.parent_id:
            self.last_row = None  # another parent's list: its cursor says nothing about this one
        self.fetched = fetched
        order = lambda r: (r[cursor_at] or "", r[key_at] or "")  # noqa: E731
        page_last = max(rows, key=order, default=None)
        if page_last is not None:
            self.last_row = page_last if self.last_row is None else max(self.last_row, page_last, key=order)
            if page_last[cursor_at] is not None:
                self.max_cursor = max(self.max_cursor or "", page_last[cursor_at])


class Extraction:
    """One read of one resource of one site over one window, resumable from its checkpoint."""

    def __init__(self, client: RecurlyClient, engine: sa.Engine, resource: Resource, window: Window, *,
                 run_id: str, mode: str = "daily", progress_every: float = 5.0):
        self.client = client
        self.engine = engine
        self.resource = resource
        self.window = window
        self.run_id = run_id
        self.mode = mode
        self.site = client.site.subdomain
        self.result = ExtractResult(site=self.site, resource=resource.name)
        self.progress = Progress(f"{self.site}/{resource.name} {window}", progress_every)
        self._max_updated_at: datetime | None = None
        self._refused_logged = 0
        self._convert = converter(resource.name)
        # The window as stored timestamp text: rows carry their cursor in that form, which orders as text.
        self._from = datetime_text(window.start) if window.start else None
        self._until = datetime_text(window.end) if window.end else None

    # -- the read -----------------------------------------------------------------------------
    def run(self) -> ExtractResult:
        ensure_staging_tables(self.engine)
        with write_transaction(self.engine) as conn:
            checkpoint = state.load_checkpoint(conn, self.site, self.resource.name, self.window.start,
                                               self.window.end)
            self.result.resumed_from_page = checkpoint.pages if checkpoint else None
            self._open_quarantine = quarantine.has_open(conn, self.site, self.resource.name)
            runlog.start(conn, run_id=self.run_id, site=self.site, resource=self.resource.name,
                         conn_id=self.client.site.conn_id, mode=self.mode, window_start=self.window.start,
                         window_end=self.window.end, resumed_from_page=self.result.resumed_from_page)
        if checkpoint:
            log.info("%s/%s %s: resuming after %d committed pages (%d records)", self.site,
                     self.resource.name, self.window, checkpoint.pages, checkpoint.records)
        self._pages_before = checkpoint.pages if checkpoint else 0
        self._records_before = checkpoint.records if checkpoint else 0
        self._logged_stats = self.client.stats.snapshot()
        self._started = time.monotonic()
        self._batch = _Batch()
        self._writing = False
        try:
            completed = False
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recurly-prefetch") as pool:
                for fetched, more_waiting in _prefetched(pool, self._fetch(checkpoint)):
                    self._stage(fetched, more_waiting)
                    completed = fetched.last
            if not completed:  # nothing to read at all (a child resource without parents)
                with write_transaction(self.engine) as conn:
                    self._complete(conn)
        except BaseException as exc:
            if self._batch.pages and not self._writing:  # a request failed: keep the pages read before it
                self._flush_before_failing()
            self._fail(exc)
            raise
        quarantined = self.result.quarantined
        self.progress.done(f"done, {quarantined} records quarantined (extract_quarantine)" if quarantined else "done")
        return self.result

    def _fetch(self, checkpoint: state.Checkpoint | None) -> Iterator[_Fetched]:
        """Every page still to read, completed, in order; runs in the prefetch thread."""
        completions = COMPLETIONS.get(self.resource.name, ())
        contexts = [c.context(self.engine, self.site) for c in completions]
        if self.resource.parent is None:
            parents: list[str | None] = [None]
        else:
            parents = self._parent_ids()
            if checkpoint and checkpoint.parent_id in parents:
                at = parents.index(checkpoint.parent_id)
                parents = parents[at + 1:] if checkpoint.next_url is None else parents[at:]
        for position, parent_id in enumerate(parents, start=1):
            start_url = checkpoint.next_url if checkpoint and checkpoint.parent_id == parent_id else None
            path = self.resource.path.format(parent_id=parent_id)
            for page in self._pages(path, start_url, checkpoint):
                completed: dict[int, dict] = {}
                for completion, context in zip(completions, contexts):
                    completed.update(completion.complete_page(self.client, page.records, context, completed))
                last = page.next_url is None and position == len(parents)
                yield _Fetched(page, completed, parent_id, last, self.client.stats.snapshot())

    def _rows(self, fetched: _Fetched) -> tuple[list[tuple], list[RecordRejected]]:
        """The page's records inside the window as staging rows (main thread, before the write lock),
        and the records the rules refused (quarantined, whatever their window).

        Records are converted from their raw bytes, except those a completion changed and children
        without their parent's id (decoded, filled in): their raw_json is the changed object's JSON.
        """
        convert, site, stamp, run_id = self._convert, self.site, loaded_at_text(), self.run_id
        cursor_at = convert.cursor_index
        lower, upper = self._from, self._until
        parent_id = fetched.parent_id
        parent_key = self.resource.parent_key if parent_id is not None else None
        parent_at = convert.index[parent_key] if parent_key else None
        rows: list[tuple] = []
        rejected: list[RecordRejected] = []
        nul = fetched.page.may_hold_nul
        for at, raw in enumerate(fetched.page.records):
            obj = fetched.completed.get(at)
            try:
                row = convert.from_raw(raw, site, stamp, run_id, may_hold_nul=nul) if obj is None else None
                if parent_at is not None and (row is None or row[parent_at] is None):
                    obj = obj if obj is not None else decode_object(raw)
                    obj.setdefault(parent_key, parent_id)
                if obj is not None:
                    row = convert.from_object(obj, site, stamp, run_id, raw_json=encode_object(obj).decode())
            except RecordRejected as refused:
                self._log_refused(refused)
                rejected.append(refused)
                continue
            cursor = row[cursor_at] if cursor_at is not None else None
            if cursor is not None and ((lower is not None and cursor < lower) or (upper is not None and cursor >= upper)):
                continue  # outside [start, end): belongs to another window
            rows.append(row)
        return rows, rejected

    def _log_refused(self, refused: RecordRejected) -> None:
        """A warning for each of the first LOGGED_REFUSALS records refused by this read, then one line."""
        self._refused_logged += 1
        if self._refused_logged <= LOGGED_REFUSALS:
            log.warning("%s/%s: quarantined: %s", self.site, self.resource.name, refused)
        elif self._refused_logged == LOGGED_REFUSALS + 1:
            log.warning("%s/%s: more records quarantined; the rest are listed in extract_quarantine only",
                        self.site, self.resource.name)

    def _pages(self, path: str, start_url: str | None, checkpoint: state.Checkpoint | None) -> Iterator[Page]:
        params = {"limit": PAGE_SIZE, "sort": self.resource.cursor, "order": "asc",
                  **self.window.api_params(), **self.resource.list_params}
        max_pages = self._page_bound(path, params)
        if not start_url:
            yield from self.client.pages(path, params, max_pages=max_pages)
            return
        try:
            yield from self.client.pages(path, start_url=start_url, max_pages=max_pages)
        except RecurlyRequestError as exc:
            if exc.status != 400 or checkpoint is None or checkpoint.last_updated_at is None:
                raise
            # The saved cursor is no longer accepted: restart at the last committed updated_at
            # (inclusive, so ties are read again; the upsert makes that harmless).
            log.warning("%s/%s: saved cursor refused (%s); resuming from updated_at %s", self.site,
                        self.resource.name, exc.error_type, checkpoint.last_updated_at)
            params["begin_time"] = Window.of(checkpoint.last_updated_at).api_params()["begin_time"]
            yield from self.client.pages(path, params, max_pages=max_pages)

    def _page_bound(self, path: str, params: dict) -> int:
        """The most pages this window's list may take: from the list's Recurly-Total-Records (HEAD)."""
        if self.resource.parent is not None:
            return CHILD_MAX_PAGES
        total = self.client.count(path, params)
        return page_bound(total if total is not None else UNCOUNTED_RECORDS)

    def _parent_ids(self) -> list[str]:
        parent = RESOURCES[self.resource.parent]
        ids: list[str] = []
        params = {"limit": PAGE_SIZE, "sort": "created_at", "order": "asc"}
        total = self.client.count(parent.path, params)
        bound = page_bound(total if total is not None else UNCOUNTED_RECORDS)
        for page in self.client.pages(parent.path, params, max_pages=bound):
            for record in page.data:  # a parent without a usable id is quarantined by its own read
                ident = record.get(parent.primary_key) if isinstance(record, dict) else None
                if isinstance(ident, str) and ident:
                    ids.append(ident)
        return sorted(set(ids))

    # -- writes -------------------------------------------------------------------------------
    def _stage(self, fetched: _Fetched, more_waiting: bool) -> None:
        """Convert a fetched page (before the write lock) and add it to the batch; write the batch
        when no further page is waiting, when it is full, at the window's last page, or before it
        would hold a key twice."""
        page_rows, rejected = self._rows(fetched)
        if self._batch.pages and not self._batch.keys.isdisjoint(row[self._convert.key_index] for row in page_rows):
            # A record changed during the read is listed again: write the earlier version first, so
            # both versions reach staging (and the snapshots) in order, as with one page a commit.
            self._flush()
        batch = self._batch
        batch.add(fetched, page_rows, rejected, self._convert.cursor_index, self._convert.key_index)
        if fetched.last or not more_waiting or batch.records >= BATCH_RECORDS:
            self._flush()

    def _flush(self) -> None:
        """Write the batched pages in one transaction with the checkpoint of the last one."""
        batch, self._batch = self._batch, _Batch()
        if not batch.pages:
            return
        cursor_at, key_at = self._convert.cursor_index, self._convert.key_index
        last = batch.last_row
        last_updated_at = parse_timestamp(last[cursor_at]) if last else None
        batch_max = parse_timestamp(batch.max_cursor) if batch.max_cursor else None
        if batch_max and (self._max_updated_at is None or batch_max > self._max_updated_at):
            self._max_updated_at = batch_max
        fetched = batch.fetched
        rows = dedupe(self.resource, batch.rows, self.site)
        self._writing = True
        with write_transaction(self.engine) as conn:
            upserted = upsert_page(conn, self.resource, self.site, rows=rows)
            refused = quarantine.add(conn, batch.rejected, self.run_id) if batch.rejected else 0
            if self._open_quarantine and rows:  # records refused earlier that now passed the rules
                quarantine.resolve(conn, self.site, self.resource.name, [row[key_at] for row in rows])
            self.result.quarantined += refused
            self.result.pages += batch.pages
            self.result.records += batch.records
            for key, value in upserted.as_dict().items():
                setattr(self.result, key, getattr(self.result, key) + value)
            increments = {**upserted.as_dict(), "pages": batch.pages, "records": batch.records, "quarantined": refused,
                          **self._stats_since_logged(fetched.stats)}
            runlog.add(conn, run_id=self.run_id, site=self.site, resource=self.resource.name, **increments)
            if fetched.last:
                self._complete(conn)
            else:
                state.save_checkpoint(conn, self.site, self.resource.name, self.window.start, self.window.end,
                                      state.Checkpoint(
                                          parent_id=fetched.parent_id, next_url=fetched.page.next_url,
                                          last_updated_at=last_updated_at, last_id=last[key_at] if last else None,
                                          pages=self._pages_before + self.result.pages,
                                          records=self._records_before + self.result.records),
                                      self.run_id)
        self._writing = False
        for records in batch.page_records:
            self.progress.page(records)

    def _flush_before_failing(self) -> None:
        try:
            self._flush()
        except Exception:
            log.exception("%s/%s: could not commit the pages read before the failure", self.site, self.resource.name)

    def _stats_since_logged(self, now: RequestStats) -> dict[str, float]:
        delta = now.since(self._logged_stats)
        self._logged_stats = now
        for key, value in delta.items():
            setattr(self.result, key, getattr(self.result, key) + value)
        return delta

    def _complete(self, conn: sa.Connection) -> None:
        seconds = time.monotonic() - self._started
        self.result.seconds = round(seconds, 3)
        runlog.add(conn, run_id=self.run_id, site=self.site, resource=self.resource.name, seconds=seconds,
                   **self._stats_since_logged(self.client.stats.snapshot()))
        state.advance_watermark(conn, self.site, self.resource.name, self.window.end, self._max_updated_at,
                                self.run_id)
        state.clear_checkpoint(conn, self.site, self.resource.name, self.window.start, self.window.end)
        runlog.finish(conn, run_id=self.run_id, site=self.site, resource=self.resource.name, status="success")

    def _fail(self, exc: BaseException) -> None:
        self.progress.done(f"failed ({type(exc).__name__})")
        try:
            with write_transaction(self.engine) as conn:
                runlog.add(conn, run_id=self.run_id, site=self.site, resource=self.resource.name,
                           seconds=time.monotonic() - self._started,
                           **self._stats_since_logged(self.client.stats.snapshot()))
                runlog.finish(conn, run_id=self.run_id, site=self.site, resource=self.resource.name,
                              status="failed",
                              error=scrub(f"{type(exc).__name__}: {exc}", (self.client.site.api_key,)))
        except Exception:  # the warehouse itself may be what failed; the original error matters
            log.exception("could not record the failure of %s/%s in the run log", self.site, self.resource.name)


def _prefetched(pool: ThreadPoolExecutor, items: Iterator[_Fetched], depth: int = PREFETCH_PAGES
                ) -> Iterator[tuple[_Fetched, bool]]:
    """Yield the items of `items`, produced in `pool` up to `depth` ahead (a bounded queue), each
    with whether a further item is already waiting.

    Deeper than one page because pages are written in batches: while a batch is written, the
    fetching thread keeps going. The producer's errors are raised here, in order; when the
    consumer stops early (an error while writing), the producer stops after its current item.
    """
    handoff: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))

    producer = pool.submit(produce)
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is end:
                break
            yield item, not handoff.empty()
    finally:
        stop.set()
        producer.result()


def extract_resource(client: RecurlyClient, engine: sa.Engine, resource: Resource | str, window: Window, *,
                     run_id: str, mode: str = "daily", progress_every: float = 5.0) -> ExtractResult:
    """Read one resource of the client's site over `window` into staging (resuming if checkpointed)."""
    if isinstance(resource, str):
        resource = RESOURCES[resource]
    return Extraction(client, engine, resource, window, run_id=run_id, mode=mode,
                      progress_every=progress_every).run()
