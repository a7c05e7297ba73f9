"""``mentor serve``: a FastAPI app over a loaded bundle (needs the ``serve`` extra).

Endpoints (OpenAPI docs at ``/docs``, schema at ``/openapi.json``):

- ``GET /recommend?user=U&k=10&exclude_seen=true``: one user's top-K.
- ``POST /recommend``: ``{"users": [...], "k": 10, "exclude_seen": true, "items": [...]?,
  "exclude": [...]?}``, at most :data:`MAX_BATCH` users and :data:`MAX_CANDIDATES` candidate
  items per request; or ``{"histories": [[item, ...], ...], ...}`` for visitors without a
  trained id (fold-in).
- ``DELETE /items/{id}``: remove an item (API key); ``POST /admin/reload``: load a new bundle
  without a restart (API key).
- ``GET /similar?item=I&k=10``: items with the most similar representations.
- ``POST /items``: cold-start items from features (``X-API-Key`` header equal to the
  ``MENTOR_API_KEY`` environment variable; refused while it is unset).
- ``GET /health``, ``GET /metrics`` (Prometheus text format).

Every bad request gets a 4xx JSON body (``{"detail": ...}``): 400 bad values, 401/403 key
problems, 404 unknown item ids, 409 an item id that exists already, 413 a body over the limit
(:data:`MAX_BODY_BYTES` by default), 422 malformed requests (also ``NaN``, ``Infinity``, numbers
beyond float range and ids over :data:`ID_MAX_LENGTH` characters). Unknown users are not an error:
they get the most popular items with ``fallback: true``.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from mentor import __version__
from mentor.errors import MentorError
from mentor.extras import require
from mentor.serve.format import IMAGES
from mentor.serve.recommender import (
    SCORE_BUDGET,
    DuplicateIdError,
    Recommender,
    UnknownIdError,
)
from mentor.serve.service import Service
from mentor.serve.store import open_store

MAX_K = 1000
MAX_BATCH = 1000
MAX_CANDIDATES = 100_000
MAX_NEW_ITEMS = 1000
MAX_HISTORY = 1000
MAX_TITLE = 300
MAX_TEXT = 5000
API_KEY_ENV = "MENTOR_API_KEY"
BUNDLE_ENV = "MENTOR_BUNDLE"
INDEX_ENV = "MENTOR_INDEX"
WORKERS_ENV = "MENTOR_WORKERS"
STORE_ENV = "MENTOR_STORE"
POLL_ENV = "MENTOR_POLL_SECONDS"
BUDGET_ENV = "MENTOR_SCORE_BUDGET_BYTES"
ID_MAX_LENGTH = 512
MAX_FEATURE = 1e6
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BODY_ENV = "MENTOR_MAX_BODY_BYTES"

log = logging.getLogger("mentor.serve")


def _json_int(value: Any) -> Any:
    """A JSON Schema integer: a whole number, also written as 10.0; never true or "10"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("Input should be a valid integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_int)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH)]
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its text (``"nan"``, ``"inf"``), so
    that an error echoing the request's input is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


class ErrorBody(BaseModel):
    """Every 4xx (other than 422) and 5xx response."""

    detail: str


class UserList(BaseModel):
    """One user's ranked items."""

    user: str
    items: list[str] = Field(description="external item ids, best first")
    scores: list[float] = Field(description="dot-product scores (popularity when fallback)")
    fallback: bool = Field(description="unknown user: the most popular items")


class _ListRequest(BaseModel):
    """What every list request may set."""

    model_config = STRICT
    k: JsonInt = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    items: list[Id] | None = Field(
        None, min_length=1, max_length=MAX_CANDIDATES, description="candidate item ids to rank"
    )
    exclude: list[Id] | None = Field(
        None, max_length=MAX_CANDIDATES, description="item ids to leave out of every list"
    )


class RecommendRequest(_ListRequest):
    """Many known users at once."""

    users: list[Id] = Field(min_length=1, max_length=MAX_BATCH)


class HistoryRequest(_ListRequest):
    """Visitors without a trained user id, each given by the items they interacted with
    (fold-in); their lists come back keyed ``history:<n>``."""

    histories: list[Annotated[list[Id], Field(max_length=MAX_HISTORY)]] = Field(
        min_length=1, max_length=MAX_BATCH
    )


class RecommendResponse(BaseModel):
    """Lists in the order of the request's users."""

    results: list[UserList]


class SimilarResponse(BaseModel):
    """Items most similar to ``item`` (cosine of representations)."""

    item: str
    items: list[str]
    scores: list[float]


def _add_items_model(dims: dict[str, int]) -> type[BaseModel]:
    """The ``POST /items`` body for a bundle whose new items need ``dims`` (modality ->
    feature length), so that the OpenAPI schema states the exact modalities and lengths."""
    value = Annotated[float, Field(ge=-MAX_FEATURE, le=MAX_FEATURE)]
    if dims:
        fields: dict[str, Any] = {
            f"m{i}": (list[value], Field(alias=m, min_length=d, max_length=d))  # type: ignore[valid-type]
            for i, (m, d) in enumerate(dims.items())
        }
        features: Any = create_model(
            "Features",
            __config__=ConfigDict(**STRICT, populate_by_name=True),
            **fields,
        )
    else:
        features = dict[str, list[value]]  # type: ignore[valid-type]
    item = create_model(
        "NewItem",
        __config__=STRICT,
        __doc__="One cold-start item: its id, one feature vector per modality and optional "
        "display fields.",
        id=(Id, ...),
        features=(features, ...),
        title=(str | None, Field(None, max_length=MAX_TITLE)),
        text=(str | None, Field(None, max_length=MAX_TEXT)),
        image=(str | None, Field(None, max_length=2048, pattern=r"^https?://\S+$")),
    )
    return create_model(
        "AddItemsRequest",
        __config__=STRICT,
        __doc__=f"New items (at most {MAX_NEW_ITEMS} per request).",
        items=(list[item], Field(min_length=1, max_length=MAX_NEW_ITEMS)),  # type: ignore[valid-type]
    )


class ItemInfo(BaseModel):
    """An item's display record (fields are "" where the data has none)."""

    id: str
    title: str
    text: str
    image: str = Field(description="an http(s) URL, a path of this server, or empty")


class ItemList(BaseModel):
    """Display records of items."""

    items: list[ItemInfo]


class LookupRequest(BaseModel):
    """Item ids whose display records to return (unknown and removed ids are left out)."""

    model_config = STRICT
    ids: list[Id] = Field(min_length=1, max_length=MAX_K)


class UserInfo(BaseModel):
    """A known user: whether the model was trained on them, and their training items."""

    user: str
    trained: bool
    history: list[str]


class Curves(BaseModel):
    """The bundle's training history: one row per validated epoch (empty without one)."""

    columns: list[str]
    rows: list[list[float | None]]


class AddItemsResponse(BaseModel):
    """How many items were added and how many live items the catalogue has now."""

    added: int
    items: int


class RemoveItemResponse(BaseModel):
    """How many items were removed and how many live items the catalogue has now."""

    removed: int
    items: int


class ReloadRequest(BaseModel):
    """Which bundle to load (default: the served bundle's folder, read again)."""

    model_config = STRICT
    bundle: str | None = Field(None, min_length=1, max_length=4096)


class ReloadResponse(BaseModel):
    """The bundle now served (``scheduled``: several processes restart one by one)."""

    scheduled: bool
    bundle_digest: str
    model: str


class Health(BaseModel):
    """What the server holds."""

    status: str
    model: str
    users: int
    items: int
    dim: int
    index: str
    can_add_items: bool
    feature_dims: dict[str, int]
    bundle_digest: str = Field(description="SHA-256 of the bundle's checksums.json")
    bundle_version: str = Field(description="mentor version that wrote the bundle")
    removed_items: int
    catalog_seq: int = Field(description="last change of the durable log applied")
    store: str = Field(description="where catalogue changes are logged")
    version: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad value"},
    404: {"model": ErrorBody, "description": "unknown item id"},
}
ITEM_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "features give non-finite representations"},
    401: {"model": ErrorBody, "description": "missing or wrong X-API-Key"},
    403: {
        "model": ErrorBody,
        "description": (
            f"adding items is disabled ({API_KEY_ENV} unset, an id-only model, or several "
            "server processes without a durable store)"
        ),
    },
    409: {"model": ErrorBody, "description": "an item id exists already or is given twice"},
}
KEY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: ITEM_ERRORS[401],
    403: {"model": ErrorBody, "description": f"{API_KEY_ENV} unset: changes are disabled"},
}
STATIC = Path(__file__).with_name("static")
BUNDLE_HEADER = "X-Mentor-Bundle"
BUNDLE_VERSION_HEADER = "X-Mentor-Bundle-Version"
WORKER_HEADER = "X-Mentor-Worker"


class _Metrics:
    """Prometheus counters and latency histograms per endpoint, in the app's own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mentor_requests", "HTTP requests", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mentor_request_seconds",
            "request latency",
            ["path"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.users = Counter("mentor_users_ranked", "users ranked", registry=self.registry)


KNOWN_PATHS = {
    "/",
    "/recommend",
    "/similar",
    "/items",
    "/items/lookup",
    "/items/search",
    "/curves",
    "/health",
    "/metrics",
    "/admin/reload",
}


class _MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): counts and times requests."""

    def __init__(self, app: Any, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path not in KNOWN_PATHS:
            path = "/items/{id}" if path.startswith("/items/") else "other"
        start = time.perf_counter()
        status = [500]

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


class _BodyLimit:
    """Pure ASGI middleware: a request body over ``max_bytes`` gets a 413, whether its
    Content-Length says so up front or a chunked body grows past it while it is read."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body over {self.max_bytes:,} bytes; send smaller batches"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            await _error(413, self._detail())(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited, send)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(
    rec: Recommender | Service,
    api_key: str | None = None,
    workers: int = 1,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """The HTTP app over ``rec`` (a loaded bundle, or a :class:`Service` with its change log).

    Args:
        api_key: the key that ``POST /items``, ``DELETE /items/{id}`` and ``POST
            /admin/reload`` require; default the ``MENTOR_API_KEY`` environment variable; None
            or empty disables them.
        workers: server processes; with more than one and no durable store, catalogue changes
            are refused (each process would hold its own catalogue), and a reload restarts the
            processes one by one through the uvicorn supervisor (with a durable store, every
            process follows the logged reload).
        max_body_bytes: largest request body accepted (413 beyond); default the
            ``MENTOR_MAX_BODY_BYTES`` environment variable, else :data:`MAX_BODY_BYTES`.
    """
    service = rec if isinstance(rec, Service) else Service(rec)
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if max_body_bytes is None:
        max_body_bytes = int(os.environ.get(MAX_BODY_ENV) or MAX_BODY_BYTES)
    if max_body_bytes < 1:
        raise MentorError(f"the request body limit must be at least 1 byte, got {max_body_bytes}")
    first = service.current()
    app = FastAPI(
        title="mentor recommendations",
        version=__version__,
        description=(
            f"Recommendations from a `{first.model}` bundle. Batches: at most {MAX_BATCH} users, "
            f"{MAX_CANDIDATES} candidate items, {MAX_NEW_ITEMS} new items per request; "
            f"k at most {MAX_K}. Every answer carries the headers {BUNDLE_HEADER} (the served "
            f"bundle's digest) and {BUNDLE_VERSION_HEADER} (the mentor version that wrote it)."
        ),
    )
    app.state.service = service
    metrics = _Metrics()
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)  # outermost: counts the 413s too

    def labels(served: Recommender) -> dict[str, str]:
        """The headers naming the bundle an answer comes from: its digest and version."""
        return {BUNDLE_HEADER: served.digest, BUNDLE_VERSION_HEADER: served.mentor_version}

    def answer(served: Recommender, payload: dict[str, Any]) -> JSONResponse:
        """A JSON answer computed wholly from ``served``, labelled with its bundle."""
        return JSONResponse(payload, headers=labels(served))

    @app.exception_handler(MentorError)
    async def mentor_error(request: Request, exc: MentorError) -> JSONResponse:
        status = 400
        if isinstance(exc, UnknownIdError):
            status = 404
        elif isinstance(exc, DuplicateIdError):
            status = 409
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the errors echo the input, which may hold NaN or infinity (JSON has neither)
        detail = _finite_json(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)

    def refused(x_api_key: str | None) -> JSONResponse | None:
        """The 403/401 answer when the caller may not change the service, else None."""
        if not api_key:
            return _error(403, f"changes are disabled on this server; set {API_KEY_ENV}")
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            return _error(401, "missing or wrong X-API-Key header")
        return None

    def not_shared() -> JSONResponse | None:
        """The 403 answer when changes could reach only this process, else None."""
        if workers > 1 and not service.durable:
            return _error(
                403,
                f"catalogue changes need one server process or a durable store (this server "
                f"runs {workers} with an in-memory log); restart with --workers 1 or --store",
            )
        return None

    key_header = Header(None, description=f"must equal ${API_KEY_ENV}")

    @app.get("/recommend", response_model=UserList, responses=ERRORS)
    async def recommend_one(
        user: str = Query(max_length=ID_MAX_LENGTH, description="external user id"),
        k: int = Query(10, ge=1, le=MAX_K),
        exclude_seen: bool = Query(True, description="leave out the user's trained items"),
    ) -> JSONResponse:
        """Top-``k`` items of one user; an unknown user gets the most popular items."""
        served = service.current()
        result = served.recommend([user], k, exclude_seen)[0]
        metrics.users.inc()
        return answer(served, {"user": user, **result.to_dict()})

    @app.post("/recommend", response_model=RecommendResponse, responses=ERRORS)
    def recommend_many(body: RecommendRequest | HistoryRequest) -> JSONResponse:
        """Top-``k`` items of each of up to MAX_BATCH users (optionally among ``items``), or of
        each item history (a visitor without a trained id: its items folded into a user
        vector the way the model builds users)."""
        served = service.current()
        if isinstance(body, HistoryRequest):
            results = served.recommend_histories(
                body.histories, body.k, body.exclude_seen, body.items, body.exclude
            )
        else:
            results = served.recommend(
                body.users, body.k, body.exclude_seen, body.items, body.exclude
            )
        metrics.users.inc(len(results))
        return answer(served, {"results": [{"user": r.key, **r.to_dict()} for r in results]})

    @app.get("/similar", response_model=SimilarResponse, responses=ERRORS)
    async def similar(
        item: str = Query(max_length=ID_MAX_LENGTH, description="external item id"),
        k: int = Query(10, ge=1, le=MAX_K),
    ) -> JSONResponse:
        """Items whose representations have the highest cosine with ``item``'s."""
        served = service.current()
        result = served.similar_items(item, k)
        return answer(served, {"item": item, "items": result.items, "scores": result.scores})

    add_body = _add_items_model(first.feature_dims)

    def add_items(body: BaseModel, x_api_key: str | None = key_header) -> JSONResponse:
        """Add cold-start items from their feature vectors (one list per modality); logged
        durably before the answer."""
        denied = refused(x_api_key) or not_shared()
        if denied:
            return denied
        served = service.current()
        if not served.can_add_items:
            return _error(
                403,
                served.no_cold_start
                or f"model {served.model} embeds items from ids only; it cannot add new items",
            )
        items = body.items  # type: ignore[attr-defined]
        ids = [item.id for item in items]
        rows = [item.features.model_dump(by_alias=True) for item in items]
        features = {m: [row[m] for row in rows] for m in served.feature_dims}
        meta = [
            {f: getattr(item, f) for f in ("title", "text", "image") if getattr(item, f)}
            for item in items
        ]
        served = service.add(ids, features, meta)  # the log refuses an id added meanwhile
        return answer(served, {"added": len(ids), "items": served.n_items})

    add_items.__annotations__["body"] = add_body  # a class built for this bundle
    app.post("/items", response_model=AddItemsResponse, responses=ITEM_ERRORS)(add_items)

    @app.delete(
        "/items/{item_id}",
        response_model=RemoveItemResponse,
        responses={**KEY_ERRORS, 404: ERRORS[404]},
    )
    def remove_item(
        item_id: str = PathParam(max_length=ID_MAX_LENGTH, description="external item id"),
        x_api_key: str | None = key_header,
    ) -> JSONResponse:
        """Remove an item (from the bundle or added): it never appears in a list again;
        logged durably before the answer."""
        denied = refused(x_api_key) or not_shared()
        if denied:
            return denied
        served = service.remove([item_id])
        return answer(served, {"removed": 1, "items": served.n_items})

    @app.post(
        "/admin/reload",
        response_model=ReloadResponse,
        responses={
            **KEY_ERRORS,
            400: {"model": ErrorBody, "description": "not a readable bundle, or a bad body"},
        },
    )
    def reload(
        body: ReloadRequest | None = None, x_api_key: str | None = key_header
    ) -> JSONResponse:
        """Load a new bundle without a restart; requests in flight finish on the old one.
        The reload is logged, so every other server process sharing the catalogue log follows
        within its poll delay (with an in-memory log, the uvicorn supervisor restarts them)."""
        denied = refused(x_api_key)
        if denied:
            return denied
        path = body.bundle if body else None
        if workers > 1 and path:
            return _error(
                400,
                "with several server processes a reload re-reads the served bundle path; "
                "point it (e.g. a symlink) at the new bundle and reload without 'bundle'",
            )
        if workers > 1 and not service.durable:
            # no shared log to tell the others: the uvicorn supervisor restarts them all
            os.kill(os.getppid(), signal.SIGHUP)
            served = service.current()
            return answer(
                served, {"scheduled": True, "bundle_digest": served.digest, "model": served.model}
            )
        served = service.reload(path)  # logged: every other process follows
        return answer(
            served,
            {"scheduled": workers > 1, "bundle_digest": served.digest, "model": served.model},
        )

    def shown(served: Recommender, records: list[dict[str, str]]) -> list[dict[str, str]]:
        """Display records with the bundle's own images as paths of this server."""
        for record in records:
            if record["image"] and not record["image"].startswith(("http://", "https://")):
                record["image"] = "/" + record["image"]
        return records

    @app.post("/items/lookup", response_model=ItemList, responses={400: ERRORS[400]})
    async def lookup(body: LookupRequest) -> JSONResponse:
        """Display records (title, text, image) of up to MAX_K items."""
        served = service.current()
        return answer(served, {"items": shown(served, served.describe(body.ids))})

    @app.get("/items/search", response_model=ItemList, responses=ERRORS)
    async def search(
        q: str = Query(min_length=1, max_length=MAX_TITLE, description="part of a title or id"),
        k: int = Query(20, ge=1, le=MAX_K),
    ) -> JSONResponse:
        """Live items whose title or id contains ``q`` (case-insensitive), in catalogue order."""
        served = service.current()
        return answer(served, {"items": shown(served, served.search(q, k))})

    @app.get("/users/{user_id}", response_model=UserInfo, responses={404: ERRORS[404]})
    async def user_info(
        user_id: str = PathParam(max_length=ID_MAX_LENGTH, description="external user id"),
    ) -> JSONResponse:
        """A known user's training items (404 for an id the bundle does not hold)."""
        served = service.current()
        row = served.user_index.get(user_id)
        if row is None:
            return _error(404, f"unknown user id '{user_id}'")
        history = [served.catalog.ids[i] for i in served.seen(row)]
        trained = served.trained_user(user_id) is not None
        return answer(served, {"user": user_id, "trained": trained, "history": history})

    @app.get("/curves", response_model=Curves)
    async def curves() -> JSONResponse:
        """Per-epoch loss terms and validation metrics of the run the bundle was made from."""
        served = service.current()
        return answer(served, served.curves())

    @app.get("/images/{name}", include_in_schema=False)
    async def image(name: str) -> Response:
        """A display image copied into the bundle."""
        served = service.current()
        if not re.fullmatch(r"\d+\.(jpg|jpeg|png|gif|webp)", name):
            return _error(404, "no such image")
        path = Path(served.path) / IMAGES / name
        if not path.is_file():
            return _error(404, "no such image")
        return FileResponse(path, headers=labels(served))

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        """The web page: users, their lists, similar items, search, adding items."""
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=Health)
    async def health() -> JSONResponse:
        """Liveness and what the server holds."""
        served = service.current()
        response = answer(
            served,
            {"status": "ok", **served.info(), "store": service.store.url, "version": __version__},
        )
        response.headers[WORKER_HEADER] = str(os.getpid())  # which server process answered
        return response

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Request counts and latencies in the Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(
            generate_latest(metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    return app


def app_from_env() -> FastAPI:
    """The app over the bundle named by ``MENTOR_BUNDLE`` (how ``mentor serve`` starts each
    uvicorn worker), its change log named by ``MENTOR_STORE``. A single process reloads its
    bundle on SIGHUP (with several, the uvicorn supervisor handles SIGHUP)."""
    path = os.environ.get(BUNDLE_ENV)
    if not path:
        raise MentorError(f"{BUNDLE_ENV} is not set; start the server with `mentor serve`")
    rec = Recommender.load(path, index=os.environ.get(INDEX_ENV, "exact"))
    rec.score_budget = int(os.environ.get(BUDGET_ENV) or rec.score_budget)
    store = open_store(os.environ.get(STORE_ENV) or None, Path(path))
    service = Service(rec, store, poll_seconds=float(os.environ.get(POLL_ENV, "0.5")))
    workers = int(os.environ.get(WORKERS_ENV, "1"))
    if workers == 1 and threading.current_thread() is threading.main_thread():

        def on_hup(signum: int, frame: Any) -> None:
            threading.Thread(target=_reload_logged, args=(service,), daemon=True).start()

        signal.signal(signal.SIGHUP, on_hup)
    return create_app(service, workers=workers)


def _reload_logged(service: Service) -> None:
    try:
        service.reload()
    except Exception:  # a bad new bundle: keep serving the old one
        log.exception("reload on SIGHUP failed; still serving the previous bundle")


def serve(
    bundle: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    index: str = "exact",
    max_body_bytes: int = MAX_BODY_BYTES,
    store: str | None = None,
    poll_seconds: float = 0.5,
    score_budget: int = SCORE_BUDGET,
) -> None:
    """Run the server on uvicorn (blocks until stopped).

    Args:
        store: where catalogue changes are logged (see :func:`mentor.serve.store.open_store`;
            default an SQLite file beside the bundle).
        poll_seconds: the most time between two reads of the log by one process.
        score_budget: bytes of scores one request may hold (users are scored in blocks).
    """
    import uvicorn

    if workers < 1:
        raise MentorError(f"--workers must be at least 1, got {workers}")
    if not 1 <= port <= 65535:
        raise MentorError(f"--port must be between 1 and 65535, got {port}")
    if max_body_bytes < 1:
        raise MentorError(f"--max-body-mb must be positive, got {max_body_bytes} bytes")
    if score_budget < 1:
        raise MentorError(f"--score-budget-mb must be positive, got {score_budget} bytes")
    if not poll_seconds > 0:
        raise MentorError(f"--poll-seconds must be positive, got {poll_seconds}")
    if index not in ("exact", "faiss"):
        raise MentorError(f"--index must be 'exact' or 'faiss', got {index!r}")
    if index == "faiss":  # the workers build the index; refuse before any of them starts
        require("faiss", "faiss", "--index faiss")
    Recommender.load(bundle, index="exact")  # fail fast, with a one-line error
    open_store(store, Path(bundle)).close()  # and on a store that cannot be opened
    if workers > 1 and store == "memory":
        log.warning("--store memory with several workers: catalogue changes are refused")
    os.environ[BUNDLE_ENV] = str(bundle)
    os.environ[INDEX_ENV] = index
    os.environ[WORKERS_ENV] = str(workers)
    os.environ[MAX_BODY_ENV] = str(max_body_bytes)
    os.environ[POLL_ENV] = str(poll_seconds)
    os.environ[BUDGET_ENV] = str(score_budget)
    if store is None:
        os.environ.pop(STORE_ENV, None)
    else:
        os.environ[STORE_ENV] = store
    uvicorn.run(
        "mentor.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )
