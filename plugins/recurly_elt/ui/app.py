"""The plugin's FastAPI app: JSON endpoints under /api and HTML pages, all behind Airflow's auth.

Mounted by Airflow's API server at /recurly (see plugin.py). Every route depends on
`auth.require_reader` (set on the app, so a new route cannot skip it) and the run-history
routes also on `auth.require_run_history` / `auth.require_dag_run`. FastAPI's own docs routes are
off (they would be unprotected). Every answer is read-only SQL with bound parameters through
`warehouse.Reader`.
"""

from __future__ import annotations

import logging
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from recurly_elt.ui import auth, charts, health, revenue, runs
from recurly_elt.ui.cache import TransformVersionCache
from recurly_elt.ui.warehouse import EngineProvider, Reader, engine_from_airflow_connection
from recurly_elt.warehouse.engine import WAREHOUSE_CONN_ID

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
MovementType = Literal["new", "expansion", "reactivation", "contraction", "churn", "adjustment"]
Limit = Annotated[int, Query(ge=1, le=1000)]
STATIC_FILES = {"recurly.js": "application/javascript", "recurly.css": "text/css"}
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                    "Cache-Control": "no-store"}


def plotly_js_path() -> Path:
    """plotly.js as the plotly package ships it (no CDN: the pages work offline)."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


class WarehouseUnavailable(Exception):
    pass


def _reader(request: Request) -> Iterator[Reader]:
    try:
        engine = request.app.state.engine()
        conn = engine.connect()
    except Exception as exc:  # a missing connection or an unreachable database
        # The answer names the kind of failure only (a driver's message can name hosts and users);
        # the API server's log has the whole message.
        log.warning("Recurly UI: warehouse (connection %s) unavailable: %s", WAREHOUSE_CONN_ID, exc)
        raise WarehouseUnavailable(type(exc).__name__) from None
    try:
        yield Reader(conn, request.app.state.cache)
    finally:
        conn.close()


ReaderDep = Annotated[Reader, Depends(_reader)]


def _site_or_first(r: Reader, site: str | None) -> tuple[list[str], str | None]:
    known = r.kept(revenue.sites)
    if site is not None and site not in known:
        raise HTTPException(404, f"unknown site {site!r}; known: {', '.join(known) or 'none yet'}")
    return known, site or (known[0] if known else None)


# ---------------------------------------------------------------- JSON
api = APIRouter(prefix="/api")
run_api = APIRouter(prefix="/api/runs", dependencies=[Depends(auth.require_run_history)])


@api.get("/sites")
def api_sites(r: ReaderDep) -> dict[str, Any]:
    return {"sites": r.kept(revenue.sites), "reporting_currency": revenue.reporting_currency()}


@api.get("/revenue/mrr")
def api_mrr(r: ReaderDep, site: str | None = None) -> dict[str, Any]:
    return r.kept(revenue.mrr_over_time, site)


@api.get("/revenue/movements")
def api_movements(r: ReaderDep, site: str) -> dict[str, Any]:
    months = r.kept(revenue.movement_months, site)
    return {"site": site, "months": months, "waterfalls": [revenue.waterfall(m) for m in months]}


@api.get("/revenue/movements/accounts")
def api_movement_accounts(r: ReaderDep, site: str, month: date, movement_type: MovementType,
                          limit: Limit = 500) -> dict[str, Any]:
    return revenue.movement_accounts(r, site, month.isoformat(), movement_type, limit)


@api.get("/revenue/segments")
def api_segments(r: ReaderDep, site: str) -> dict[str, Any]:
    return r.kept(revenue.plan_segments, site)


@api.get("/health/bands")
def api_bands(r: ReaderDep) -> dict[str, Any]:
    return r.kept(health.band_distribution)


@api.get("/health/at-risk")
def api_at_risk(r: ReaderDep, site: str | None = None, limit: Limit = health.AT_RISK_LIMIT) -> dict[str, Any]:
    return r.kept(health.at_risk, site, limit)


@api.get("/health/account")
def api_account(r: ReaderDep, site: str, account: str) -> dict[str, Any]:
    account_id = health.find_account(r, site, account)
    if account_id is None:
        raise HTTPException(404, f"no account {account!r} on site {site!r}")
    return health.account_history(r, site, account_id)


@run_api.get("/extraction")
def api_extraction(r: ReaderDep, limit: Limit = runs.RUNS_SHOWN) -> dict[str, Any]:
    return runs.extraction(r, runs.recent_run_ids(r, limit))


@run_api.get("/freshness")
def api_freshness(r: ReaderDep) -> dict[str, Any]:
    return runs.freshness(r)


@run_api.get("/transform")
def api_transform(r: ReaderDep, limit: Limit = runs.ROWS_SHOWN) -> dict[str, Any]:
    return runs.transform_runs(r, limit)


@run_api.get("/checks")
def api_checks(r: ReaderDep, limit: Limit = runs.ROWS_SHOWN) -> dict[str, Any]:
    return runs.check_results(r, limit)


@run_api.get("/quarantine")
def api_quarantine(r: ReaderDep, limit: Limit = runs.ROWS_SHOWN) -> dict[str, Any]:
    return runs.quarantine(r, limit)


@run_api.get("/deliveries")
def api_deliveries(r: ReaderDep, limit: Limit = runs.ROWS_SHOWN) -> dict[str, Any]:
    return runs.deliveries(r, limit)


def _project_dag(dag_id: str) -> None:
    if dag_id not in auth.PROJECT_DAG_IDS:
        raise HTTPException(404, f"{dag_id} is not a Recurly DAG (these are: {', '.join(auth.PROJECT_DAG_IDS)}): "
                                 "its runs have no Recurly summary")


@api.get("/dags/{dag_id}/runs/{run_id}/summary", dependencies=[Depends(auth.require_dag_run)])
def api_run_summary(r: ReaderDep, dag_id: str, run_id: str) -> dict[str, Any]:
    _project_dag(dag_id)
    return {"dag_id": dag_id, **runs.run_summary(r, run_id)}


# ---------------------------------------------------------------- pages
pages = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _templates():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["money"] = lambda v: "" if v is None else f"{float(v):,.2f}"
    env.filters["num"] = _number
    return env


def _number(value: Any) -> Any:
    """Counts with thousands separators, other numbers with two decimals unless whole."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else value
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return value


def render(request: Request, template: str, title: str, **values: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "").rstrip("/")
    html = _templates().get_template(template).render(base=base, title=title, **values)
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@pages.get("/")
def index(request: Request) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/revenue")


@pages.get("/revenue")
def revenue_page(request: Request, r: ReaderDep, site: str | None = None, month: date | None = None):
    known, site = _site_or_first(r, site)
    currency = revenue.reporting_currency()
    mrr = r.kept(revenue.mrr_over_time, None)
    months = r.kept(revenue.movement_months, site) if site else []
    chosen = next((m for m in months if month is None or m["month"] == month.isoformat()), None)
    if month is not None and chosen is None:
        raise HTTPException(404, f"no movements for {site} in {month.isoformat()}")
    wf = revenue.waterfall(chosen) if chosen else None
    segments = r.kept(revenue.plan_segments, site) if site else {"available": False, "plans": [], "rows": []}
    figures = {}
    if mrr["sites"]:
        figures["mrr"] = charts.mrr_lines(mrr["sites"], currency)
    if wf:
        figures["waterfall"] = charts.movements_waterfall(site, wf, currency)
    if segments["plans"]:
        figures["plans"] = charts.plan_bars(site, segments["plans"], currency)
    return render(request, "revenue.html", "Revenue", sites=known, site=site, currency=currency, mrr=mrr,
                  months=months, month=chosen, waterfall=wf, segments=segments, figures=figures)


@pages.get("/health")
def health_page(request: Request, r: ReaderDep, site: str | None = None):
    known, _ = _site_or_first(r, site)
    bands = r.kept(health.band_distribution)
    risk = r.kept(health.at_risk, site, health.AT_RISK_LIMIT)
    figures = {"bands": charts.band_bars(bands)} if bands["sites"] else {}
    return render(request, "health.html", "Health", sites=known, site=site, bands=bands, risk=risk,
                  figures=figures, currency=revenue.reporting_currency())


@pages.get("/health/account")
def account_page(request: Request, r: ReaderDep, site: str, account: str):
    account_id = health.find_account(r, site, account)
    if account_id is None:
        raise HTTPException(404, f"no account {account!r} on site {site!r}")
    history = health.account_history(r, site, account_id)
    currency = revenue.reporting_currency()
    return render(request, "account.html", f"Account {account}", history=history, currency=currency,
                  figures={"account": charts.account_lines(history, currency)})


@pages.get("/runs", dependencies=[Depends(auth.require_run_history)])
def runs_page(request: Request, r: ReaderDep, limit: Limit = runs.RUNS_SHOWN):
    extraction = runs.extraction(r, runs.recent_run_ids(r, limit))
    checks = runs.check_results(r)
    figures = {}
    if extraction["runs"]:
        figures["extraction"] = charts.extraction_bars(extraction["runs"])
    if checks["rows"]:
        figures["checks"] = charts.check_bars(checks["rows"])
    return render(request, "runs.html", "Runs", extraction=extraction, freshness=runs.freshness(r),
                  transform=runs.transform_runs(r), checks=checks, quarantine=runs.quarantine(r),
                  deliveries=runs.deliveries(r), figures=figures)


@pages.get("/sync-summary/{dag_id}/{run_id}", dependencies=[Depends(auth.require_dag_run)])
def sync_summary_page(request: Request, r: ReaderDep, dag_id: str, run_id: str):
    _project_dag(dag_id)
    summary = runs.run_summary(r, run_id)
    figures = {}
    if summary["extraction"]["runs"]:
        figures["extraction"] = charts.extraction_bars(summary["extraction"]["runs"])
    return render(request, "sync_summary.html", f"Sync summary {run_id}", dag_id=dag_id, summary=summary,
                  figures=figures)


@pages.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(plotly_js_path(), media_type="application/javascript",
                        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})


@pages.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise HTTPException(404, "not found")
    return FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"})


def _error(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
    """JSON for /api and for a refused credential; a small page for a page (it shows in Airflow's frame)."""
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    if path.startswith("/api/") or status in (401, 403):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    html = _templates().get_template("error.html").render(
        base=request.scope.get("root_path", "").rstrip("/"), title="Not available", status=status, detail=detail,
        figures={})
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def create_app(engine: EngineProvider | None = None) -> FastAPI:
    """The plugin app. `engine` returns the warehouse engine (default: the read-only engine of
    the `recurly_warehouse` connection, made once)."""
    app = FastAPI(title="Recurly", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(auth.require_reader)])
    app.state.engine = engine or lru_cache(maxsize=1)(engine_from_airflow_connection)
    app.state.cache = TransformVersionCache()
    app.include_router(api)
    app.include_router(run_api)
    app.include_router(pages)

    @app.exception_handler(WarehouseUnavailable)
    def _unavailable(request: Request, exc: WarehouseUnavailable) -> Response:
        return _error(request, 503, f"the warehouse (connection {WAREHOUSE_CONN_ID!r}) is not reachable: {exc}")

    @app.exception_handler(HTTPException)
    def _http_error(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    return app

