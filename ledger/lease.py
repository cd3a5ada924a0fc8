"""The single-maintainer lease of an object-store ledger (S3 conditional writes).

On a file system, one lifecycle operation runs at a time per store through a ``flock``
that the kernel releases when its holder dies. An object store has no locks, so the
lease is one object, ``<store>/_lifecycle/lease.json``, written only with conditional
PUTs (S3 ``If-None-Match: *`` creates, ``If-Match: <etag>`` replaces; AWS S3 since 2024,
MinIO, moto):

* **acquire**: create the object (first writer wins). If it exists: a ``released``
  lease is taken over with ``If-Match`` its ETag; a held one is watched, and taken over
  with ``If-Match`` once its ETag stayed the same for the lease's whole ``ttl`` measured
  on *this* machine's monotonic clock (its holder stopped renewing: it died or lost the
  network). No wall clocks are compared, so clock skew between machines is harmless.
* **renew**: a background thread rewrites the object every ``ttl / 3`` with ``If-Match``
  the holder's last ETag. Every body carries a fresh nonce, so two writes never share
  an ETag (S3 ETags are content hashes).
* **fence**: before a commit record is written and before garbage collection deletes
  anything, the holder renews synchronously; a failed renewal (someone took the lease
  over) aborts the operation with :class:`~ledger.errors.LeaseLostError`, before the
  commit point, so its files stay hidden and the next holder rolls them back.
* **release**: rewrite the object as ``released`` with ``If-Match`` (the next
  maintainer then takes it at once instead of waiting out the ``ttl``).

A retried request whose first attempt did land (the response was lost) answers
"precondition failed"; the lease then reads the object back and recognises its own
nonce, so retries never make a holder think it lost the lease.

The remaining gap, stated plainly: a holder that stalls for longer than ``ttl`` *between*
a successful fence and the single PUT that follows it can commit after another
maintainer took over; S3 cannot make a PUT conditional on another object. With the
default ``ttl`` of 30 s that needs a 30 s freeze between two consecutive requests.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ledger import env
from ledger.errors import ConfigError, LeaseLostError, StoreError
from ledger.ids import new_id
from ledger.objectstore import resolve_options, split_uri

if TYPE_CHECKING:
    from ledger.store import Store

LEASE_NAME = "lease.json"
DEFAULT_TTL = 30.0
"""Seconds a lease outlives its last renewal (``[lifecycle] lease_ttl`` in ``ledger.toml``)."""

_clients: dict[tuple[int, str, Any], Any] = {}
_clients_lock = threading.Lock()


def s3_client(uri: str, extra_config: dict[str, Any] | None = None) -> Any:
    """A boto3 S3 client for ``uri``'s bucket with the store's resolved settings.

    Raises:
        ConfigError: boto3 is not installed (``pip install 'ledger-tracking[s3]'``).
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 ships with the s3 extra
        raise ConfigError(
            "Lifecycle operations on an object store need boto3 (conditional writes): "
            "pip install 'ledger-tracking[s3]'"
        ) from exc
    options = resolve_options(uri, extra_config)
    key = (os.getpid(), split_uri(uri)[1], options)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            session = (
                boto3.Session(profile_name=options.profile)
                if options.profile and not options.access_key_id
                else boto3.Session()
            )
            kwargs: dict[str, Any] = {
                "region_name": options.region or ("us-east-1" if options.endpoint_url else None),
                "config": Config(
                    retries={"mode": "standard", "max_attempts": 4},
                    s3={"addressing_style": "path"} if options.endpoint_url else {},
                    connect_timeout=5,
                    read_timeout=20,
                ),
            }
            if options.endpoint_url:
                kwargs["endpoint_url"] = options.endpoint_url
            if options.anonymous:
                from botocore import UNSIGNED

                kwargs["config"] = kwargs["config"].merge(Config(signature_version=UNSIGNED))
            elif options.access_key_id and options.secret_access_key:
                kwargs["aws_access_key_id"] = options.access_key_id
                kwargs["aws_secret_access_key"] = options.secret_access_key
                kwargs["aws_session_token"] = options.session_token
            client = _clients[key] = session.client("s3", **kwargs)
        return client


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _precondition_failed(exc: BaseException) -> bool:
    # 412 PreconditionFailed; 409 ConditionalRequestConflict when two conditional writes
    # race on one key (AWS asks the loser to retry).
    return _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class ObjectLease:
    """Mutual exclusion among lifecycle operations on one object-store ledger."""

    def __init__(self, store: Store, ttl: float = DEFAULT_TTL) -> None:
        if ttl <= 0:
            raise ConfigError(f"Invalid lifecycle.lease_ttl {ttl!r}: must be positive")
        _, self.bucket, prefix = split_uri(store.uri)
        self.key = "/".join(p for p in (prefix, "_lifecycle", LEASE_NAME) if p)
        self.uri = store.uri
        self.client = s3_client(store.uri, store.settings.raw)
        self.ttl = float(ttl)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.etag: str | None = None
        self.renewed_at = 0.0
        """Monotonic time at which the last successful write of the lease was *sent*."""
        self.skew = 0.0
        """Server clock minus local clock (seconds), from the last write's Date header."""
        self.lost = False
        self._nonce = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- requests ----------------------------------------------------------------------

    def _put(self, *, released: bool = False, **condition: str) -> str:
        """One conditional PUT of a fresh body; returns its ETag (raises on 412)."""
        self._nonce = new_id()
        body = json.dumps(
            {
                "holder": self.holder,
                "nonce": self._nonce,
                "ttl": self.ttl,
                "released": released,
                "written_at": time.time(),
            }
        ).encode()
        sent = time.time()
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ContentType="application/json",
                **condition,
            )
        except Exception as exc:
            if not _precondition_failed(exc):
                raise
            # A retried request whose first attempt landed fails its own precondition:
            # if the object holds our nonce, the write did happen.
            current = self._read()
            if current is not None and current[1].get("nonce") == self._nonce:
                return current[0]
            raise
        self._clock(response, sent)
        return str(response["ETag"])

    def _clock(self, response: dict[str, Any], sent: float) -> None:
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                server = email.utils.parsedate_to_datetime(date).timestamp()
                self.skew = server - (sent + time.time()) / 2

    def _read(self) -> tuple[str, dict[str, Any]] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            body = json.loads(response["Body"].read())
        except ValueError:
            body = {}
        return str(response["ETag"]), body if isinstance(body, dict) else {}

    # -- the lease ---------------------------------------------------------------------

    def acquire(self, timeout: float) -> None:
        """Take the lease, waiting up to ``timeout`` seconds for the holder to end.

        Raises:
            StoreError: still held by a live holder after ``timeout``, or S3 refused.
        """
        deadline = time.monotonic() + timeout
        watched: tuple[str, float] | None = None  # (ETag seen, monotonic time first seen)
        holder = "another process"
        while True:
            try:
                started = time.monotonic()
                try:
                    self.etag = self._put(IfNoneMatch="*")
                    self._took(started)
                    return
                except Exception as exc:
                    if not _precondition_failed(exc):
                        raise
                current = self._read()
                if current is None:
                    continue  # removed meanwhile: create again
                etag, body = current
                holder = str(body.get("holder") or holder)
                stale = body.get("released") is True
                if not stale:
                    if watched is None or watched[0] != etag:
                        watched = (etag, time.monotonic())
                    ttl = float(body.get("ttl") or DEFAULT_TTL)
                    stale = time.monotonic() - watched[1] >= ttl
                if stale:
                    started = time.monotonic()
                    try:
                        self.etag = self._put(IfMatch=etag)
                        self._took(started)
                        return
                    except Exception as exc:
                        if not _precondition_failed(exc):
                            raise
                        watched = None  # someone else took it first: watch the new holder
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"Cannot take the lifecycle lease on {self.uri}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"Another lifecycle operation (compact/archive/restore/purge/gc) is "
                    f"running on {self.uri} (lease held by {holder}); try again when it ends"
                )
            time.sleep(min(0.25, max(0.02, self.ttl / 20)))

    def _took(self, started: float) -> None:
        self.renewed_at = started
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="ledger-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with contextlib.suppress(LeaseLostError, Exception):
                self.renew()
            if self.lost:
                return

    def renew(self) -> None:
        """Extend the lease by one ``ttl`` (conditional on still holding it).

        Raises:
            LeaseLostError: another maintainer took the lease over.
        """
        with self._lock:
            if self.lost or self.etag is None:
                raise LeaseLostError(f"The lifecycle lease on {self.uri} was lost")
            started = time.monotonic()
            try:
                self.etag = self._put(IfMatch=self.etag)
            except Exception as exc:
                if _precondition_failed(exc):
                    self.lost = True
                    raise LeaseLostError(
                        f"The lifecycle lease on {self.uri} was taken over by another "
                        "process (this one stalled for longer than the lease ttl); this "
                        "operation stopped before its commit and changed nothing visible"
                    ) from exc
                raise
            self.renewed_at = started

    def fence(self) -> None:
        """Renew now, before a step that must only happen while holding the lease.

        Raises:
            LeaseLostError: the lease is lost or cannot be renewed in time.
        """
        try:
            self.renew()
        except LeaseLostError:
            raise
        except Exception as exc:
            # S3 unreachable for a moment: go on only with a third of the ttl to spare.
            if not self.valid(margin=self.ttl / 3):
                raise LeaseLostError(
                    f"Cannot renew the lifecycle lease on {self.uri}: {exc}"
                ) from exc

    def valid(self, margin: float = 0.0) -> bool:
        """True while the last renewal is younger than ``ttl - margin`` (local clock)."""
        return not self.lost and time.monotonic() - self.renewed_at < self.ttl - margin

    def server_time(self) -> float:
        """Now on the object store's clock (for ages of objects: their LastModified)."""
        return time.time() + self.skew

    def release(self) -> None:
        """Stop renewing and mark the lease released (best effort: else it expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self.lost or self.etag is None:
                return
            with contextlib.suppress(Exception):
                self._put(released=True, IfMatch=self.etag)
            self.etag = None


_held: dict[tuple[str, int], ObjectLease] = {}
"""(store URI, thread id) -> the lease that thread holds (for fencing deep in the log
code). Per thread, like ``flock`` on separate descriptors: two threads of one process
exclude each other too."""


def lease_ttl(store: Store) -> float:
    from ledger.durations import parse_duration

    raw = os.environ.get(env.LEASE_TTL) or store.settings.raw.get("lifecycle", {}).get(
        "lease_ttl", DEFAULT_TTL
    )
    return parse_duration(raw, what="lifecycle.lease_ttl")


@contextlib.contextmanager
def object_lease(store: Store, timeout: float) -> Iterator[ObjectLease]:
    """Hold the store's lease for the ``with`` block (re-entrant within one thread)."""
    key = (store.uri, threading.get_ident())
    held = _held.get(key)
    if held is not None and held.valid():
        yield held
        return
    lease = ObjectLease(store, lease_ttl(store))
    lease.acquire(timeout)
    _held[key] = lease
    try:
        yield lease
    finally:
        _held.pop(key, None)
        lease.release()


def held_lease(store: Store) -> ObjectLease | None:
    """The lease this thread holds on ``store`` (None for file-system stores)."""
    return _held.get((store.uri, threading.get_ident()))


def fence(store: Store) -> None:
    """Before a commit point: prove this process still holds ``store``'s lease.

    No-op on file-system stores (the ``flock`` cannot be lost while its holder lives).

    Raises:
        LeaseLostError: see :meth:`ObjectLease.fence`.
    """
    lease = held_lease(store) if not store.is_local else None
    if lease is not None:
        lease.fence()
