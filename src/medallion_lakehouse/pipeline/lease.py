"""The writer lease for a lake on an object store (s3://, gs://, az://, ...).

`fcntl.flock` cannot reach an object store, so one writer per lake is kept with a *lease object*,
`<lake>/_meta/writer.lease`, written only with conditional puts:

- acquire: put with `mode="create"` (If-None-Match: *): exactly one of several writers wins;
- renew: a daemon thread re-puts it every ttl/3 with `mode={"e_tag": ours}` (If-Match), so a
  writer that lost it (replaced by a takeover, removed by `medallion unlock --force`) finds out;
- take over: a lease whose Last-Modified is more than its ttl in the past *by the store's clock*
  belongs to a crashed writer; it is replaced with If-Match on the etag we saw, so of two waiters
  only one takes it over. The store's "now" comes from a probe object's Last-Modified, so no
  local clock has to agree with the store's (only durations are measured, with `time.monotonic`);
- release: delete it if it still carries our token.

Stores are used through their methods (`store.put(...)`, which is what `obstore.put(store, ...)`
calls) and typed by the small `LeaseStore` protocol, so a test can stand in a store that ignores
preconditions, which no real server available here does.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotSupportedError,
    PreconditionError,
)

from medallion_lakehouse.errors import ConfigError, LockLostError

if TYPE_CHECKING:
    from obstore import ObjectMeta, PutMode, PutResult, UpdateVersion

log = logging.getLogger(__name__)

LEASE_KEY = "_meta/writer.lease"
PROBE_PREFIX = "_meta/.lock-probe-"
CLOCK_PREFIX = "_meta/.clock-probe-"
# S3's Last-Modified has one-second resolution (truncated): two truncated times can be up to a
# second closer than the real ones, so a lease counts as stale only a second after its ttl.
TIMESTAMP_SLACK_SECONDS = 1.0


class LeaseStore(Protocol):
    """The part of an obstore store the lease uses."""

    def put(self, path: str, file: bytes, *, mode: PutMode | None = None) -> PutResult: ...

    def get(self, path: str) -> _GetResult: ...

    def head(self, path: str) -> ObjectMeta: ...

    def delete(self, paths: str) -> None: ...


class _GetResult(Protocol):
    @property
    def meta(self) -> ObjectMeta: ...

    def bytes(self) -> Any: ...


# -- delta-rs storage options -> obstore configuration ------------------------------------------

# Keys obstore takes as HTTP client options. Given to `config` they make pyo3-object_store panic
# ("Expected config prefix to start with aws_"), a BaseException, so they are routed here.
_CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "http1_only",
        "http2_keep_alive_interval",
        "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "randomize_addresses",
        "read_timeout",
        "timeout",
        "user_agent",
    }
)
_BOOL_CLIENT_KEYS = frozenset(
    {"allow_http", "allow_invalid_certificates", "http1_only", "http2_only", "randomize_addresses"}
)
# Options that configure delta-rs itself (its commit log store, DynamoDB locking, retries, AWS
# profiles via the AWS SDK) and mean nothing to a plain put: dropped, not an error, because the
# same [storage_options] table also feeds delta-rs.
_DELTA_ONLY_KEYS = frozenset(
    {
        "aws_s3_allow_unsafe_rename",
        "aws_s3_locking_provider",
        "aws_s3_pool_idle_timeout_seconds",
        "aws_sts_pool_idle_timeout_seconds",
        "aws_s3_get_internal_server_error_retries",
        "aws_s3_assume_role_arn",
        "aws_s3_role_session_name",
        "aws_iam_role_arn",
        "aws_iam_role_session_name",
        "aws_force_credential_load",
        "aws_profile",
        "aws_ec2_metadata_disabled",
        "aws_ec2_metadata_timeout",
        "aws_endpoint_url_dynamodb",
        "aws_region_dynamodb",
        "aws_access_key_id_dynamodb",
        "aws_secret_access_key_dynamodb",
        "delta_dynamo_table_name",
        "allow_unsafe_rename",
        "mount_allow_unsafe_rename",
        "max_retries",
        "retry_timeout",
    }
)
_DELTA_ONLY_PREFIXES = ("dynamo_lock_", "backoff_config.")

# URL scheme -> the prefix obstore's config keys for that store carry.
_FAMILIES = {
    "s3": "aws",
    "s3a": "aws",
    "gs": "google",
    "gcs": "google",
    "az": "azure",
    "adl": "azure",
    "azure": "azure",
    "abfs": "azure",
    "abfss": "azure",
}
_ALL_PREFIXES = ("aws_", "google_", "azure_")


def _truthy(key: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"storage option {key} = {value!r} is not a boolean (use true or false).")


def store_config(
    url: str, storage_options: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Split delta-rs storage options into obstore's `(config, client_options)` for `url`.

    Keys are matched case-insensitively (delta-rs takes `AWS_REGION` and `aws_region`). Client
    keys (`AWS_ALLOW_HTTP`, `timeout`, ...) become client options, booleans parsed; delta-rs-only
    keys are dropped; everything else goes to `config`, where obstore checks it (unknown keys are
    a ConfigError from `open_store`). A key meant for another store family is a ConfigError.
    """
    scheme = urlsplit(url).scheme.lower()
    family = _FAMILIES.get(scheme)
    if family is None:
        raise ConfigError(
            f"The lake {url} is on a store the writer lease does not know ({scheme}://); "
            "use s3://, gs:// or az:// (abfss://), or a local folder."
        )
    config: dict[str, str] = {}
    client: dict[str, Any] = {}
    for raw_key, value in storage_options.items():
        key = raw_key.strip().lower()
        if key in _DELTA_ONLY_KEYS or key.startswith(_DELTA_ONLY_PREFIXES):
            continue
        bare = key.removeprefix(f"{family}_")
        if bare in _CLIENT_KEYS:
            client[bare] = _truthy(raw_key, value) if bare in _BOOL_CLIENT_KEYS else str(value)
            continue
        foreign = [p for p in _ALL_PREFIXES if p != f"{family}_" and key.startswith(p)]
        if foreign:
            raise ConfigError(
                f"storage option {raw_key} is for a {foreign[0].rstrip('_')} store, but the lake "
                f"{url} is on {scheme}://: remove it from [storage_options]."
            )
        config[key] = str(value)
    return config, client


def open_store(url: str, storage_options: Mapping[str, str]) -> LeaseStore:
    """An obstore store rooted at the lake `url`, configured from delta-rs storage options."""
    from obstore.store import from_url

    config, client = store_config(url, storage_options)
    try:
        # The dicts are checked above and by obstore; its TypedDicts only list known keys.
        store = from_url(
            url, config=cast(Any, config or None), client_options=cast(Any, client or None)
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a Rust panic is a BaseException; report it like the others
        raise ConfigError(
            f"Cannot open the object store for the writer lease on {url}: {first_line(exc)}. "
            "Check lake_dir and [storage_options] in medallion.toml."
        ) from exc
    return store


def first_line(exc: BaseException) -> str:
    """obstore messages carry a multi-line debug dump after the first paragraph."""
    return str(exc).split("\n\n", 1)[0].strip() or type(exc).__name__


# -- records and the store's clock --------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRecord:
    """A lease object as read: its JSON payload and the store's metadata for it."""

    payload: dict[str, Any]
    text: str
    e_tag: str | None
    version: str | None
    last_modified: datetime

    @property
    def token(self) -> str | None:
        token = self.payload.get("token")
        return token if isinstance(token, str) else None

    def ttl(self, default: float) -> float:
        """The holder's own ttl (it renews on that cadence); `default` if the payload lacks it."""
        value = self.payload.get("ttl_seconds")
        return float(value) if isinstance(value, int | float) and value >= 0 else default

    def update_version(self) -> UpdateVersion:
        return update_version(self.e_tag, self.version)


def update_version(e_tag: str | None, version: str | None) -> UpdateVersion:
    """The If-Match condition for an object version. S3 and Azure match the etag, GCS the
    generation (`version`); obstore rejects a None value, so absent parts are left out."""
    out: UpdateVersion = {}
    if e_tag is not None:
        out["e_tag"] = e_tag
    if version is not None:
        out["version"] = version
    return out


def read_lease(store: LeaseStore) -> LeaseRecord | None:
    """The lease object, or None when there is none."""
    try:
        result = store.get(LEASE_KEY)
        data = bytes(result.bytes())
    except FileNotFoundError:
        return None
    meta = result.meta
    text = data.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = {}
    return LeaseRecord(
        payload=payload if isinstance(payload, dict) else {},
        text=text,
        e_tag=meta.get("e_tag"),
        version=meta.get("version"),
        last_modified=meta["last_modified"],
    )


@dataclass(frozen=True)
class StoreClock:
    """The store's clock, read once from a probe object and carried on with `time.monotonic`."""

    at_probe: datetime
    probed: float

    @classmethod
    def probe(cls, store: LeaseStore) -> StoreClock:
        key = f"{CLOCK_PREFIX}{secrets.token_hex(8)}"
        store.put(key, b"", mode="overwrite")
        # Taken after the put returned, so the estimate below errs towards "earlier", which
        # only ever delays a takeover.
        probed = time.monotonic()
        try:
            meta = store.head(key)
        finally:
            _delete_quietly(store, key)
        return cls(meta["last_modified"], probed)

    def now(self) -> datetime:
        return self.at_probe + timedelta(seconds=time.monotonic() - self.probed)

    def age(self, when: datetime) -> float:
        """Seconds from `when` (a store timestamp) to the store's now."""
        return (self.now() - when).total_seconds()


def is_stale(record: LeaseRecord, clock: StoreClock, default_ttl: float) -> bool:
    return clock.age(record.last_modified) > record.ttl(default_ttl) + TIMESTAMP_SLACK_SECONDS


def _delete_quietly(store: LeaseStore, key: str) -> None:
    try:
        store.delete(key)
    except (BaseError, OSError) as exc:  # a leftover probe is harmless; say so and go on
        log.debug("could not delete %s: %s", key, first_line(exc))


# -- capability check ---------------------------------------------------------------------------

_capability: dict[str, str | None] = {}  # store key -> None (conditional puts work) or the reason
_capability_guard = threading.Lock()


def conditional_put_problem(store: LeaseStore, cache_key: str) -> str | None:
    """Why this store cannot carry a lease (None if it can); probed once per store per process.

    Some S3-compatible stores accept If-None-Match and ignore it, which would let two writers
    both "create" the lease: a probe object is created twice, and the second create must fail;
    then an If-Match with a wrong etag must fail too, since renewal and takeover rely on it.
    """
    with _capability_guard:
        if cache_key in _capability:
            return _capability[cache_key]
    key = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
    problem: str | None = None
    try:
        store.put(key, b"first", mode="create")
        try:
            store.put(key, b"second", mode="create")
            problem = "a second create-only put (If-None-Match: *) of a probe object succeeded"
        except (AlreadyExistsError, PreconditionError):
            pass
        if problem is None:
            try:
                store.put(key, b"third", mode={"e_tag": '"medallion-mismatch"', "version": "1"})
                problem = "a put with a wrong If-Match etag on a probe object succeeded"
            except PreconditionError:
                pass
    except (NotImplementedError, NotSupportedError) as exc:
        problem = f"the store does not support conditional puts ({first_line(exc)})"
    finally:
        _delete_quietly(store, key)
    with _capability_guard:
        _capability[cache_key] = problem
    return problem


# -- the held lease -----------------------------------------------------------------------------


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True).encode()


class Lease:
    """A lease we hold, renewed from a daemon thread until `release()`."""

    def __init__(
        self, store: LeaseStore, url: str, payload: dict[str, Any], written: PutResult, sent: float
    ) -> None:
        self.store = store
        self.url = url
        self.payload = payload
        self.ttl = float(payload["ttl_seconds"])
        self.token = str(payload["token"])
        self._version = update_version(written["e_tag"], written["version"])
        self._valid_from = sent  # monotonic time the last successful write was *sent*
        self._lost: str | None = None
        self._state = threading.Lock()  # guards the three fields above
        self._io = threading.Lock()  # one write at a time: a renewal never races the release
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_loop, name="medallion-lease", daemon=True
        )
        self._thread.start()

    # A renewal changes the payload (a counter) on purpose: S3's etag of a plain put is the MD5
    # of the content, so an identical re-put keeps the etag, and a waiter's If-Match takeover
    # based on a stale read would still succeed after we renewed.
    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        renewals = 0
        while not self._stop.wait(interval):
            with self._io:
                if self._stop.is_set():
                    return
                renewals += 1
                body = encode({**self.payload, "renewals": renewals})
                sent = time.monotonic()
                with self._state:
                    mode = self._version.copy()
                try:
                    result = self.store.put(LEASE_KEY, body, mode=mode)
                except (PreconditionError, FileNotFoundError):
                    if self._adopt_own_write():
                        interval = 0.0
                        continue
                    return
                except Exception as exc:  # network, throttling, 5xx: keep trying until the ttl
                    with self._state:
                        overdue = time.monotonic() - self._valid_from > self.ttl
                        if overdue:
                            self._lost = (
                                f"it could not be renewed for more than {self.ttl:g} s "
                                f"(last error: {first_line(exc)})"
                            )
                    if overdue:
                        return
                    interval = min(self.ttl / 3, 1.0)
                    continue
                with self._state:
                    self._version = update_version(result["e_tag"], result["version"])
                    self._valid_from = sent
                interval = self.ttl / 3

    def _adopt_own_write(self) -> bool:
        """After a refused renewal: True if the object is still ours (a write whose reply was
        lost changed the etag), else record the loss."""
        try:
            record = read_lease(self.store)
        except (BaseError, OSError) as exc:
            with self._state:
                self._lost = f"a renewal was refused and the lease could not be read ({exc})"
            return False
        with self._state:
            if record is not None and record.token == self.token:
                self._version = record.update_version()
                return True
            if record is None:
                self._lost = "it was removed (by `medallion unlock --force`?)"
            else:
                holder = record.payload
                self._lost = (
                    f"it was replaced by pid {holder.get('pid')} on {holder.get('host')} "
                    f"(run {holder.get('run_id')}, {holder.get('command') or 'a command'})"
                )
            return False

    def lost_reason(self) -> str | None:
        with self._state:
            if self._lost is None and time.monotonic() - self._valid_from > self.ttl:
                # The renewal thread is stuck (a hanging request): by now a waiter may have
                # taken the lease over, so it counts as lost even before the thread says so.
                self._lost = f"it was not renewed for more than {self.ttl:g} s"
            return self._lost

    def check(self) -> None:
        """Raise LockLostError if the lease may no longer be ours."""
        reason = self.lost_reason()
        if reason is not None:
            raise LockLostError(
                f"The writer lease {self.url} was lost: {reason}. Another writer may be writing "
                "to the lake now, so this run stopped before committing anything more; rerun it "
                "once `medallion unlock` shows the lake free."
            )

    def release(self) -> None:
        """Stop renewing and delete the lease if it still carries our token."""
        self._stop.set()
        with self._io:
            pass  # wait for a renewal in flight
        self._thread.join(timeout=1.0)
        try:
            record = read_lease(self.store)
            if record is not None and record.token == self.token:
                self.store.delete(LEASE_KEY)
        except (BaseError, OSError) as exc:
            log.warning(
                "could not remove the writer lease %s (%s); it expires %g s after its last "
                "renewal, or run `medallion unlock`",
                self.url,
                first_line(exc),
                self.ttl,
            )


class LeaseBusy(Exception):
    """Raised by `acquire` when a live lease stayed in place for the whole wait."""

    def __init__(self, record: LeaseRecord, age: float, ttl: float) -> None:
        super().__init__(record.text)
        self.record = record
        self.age = age
        self.ttl = ttl


def acquire(
    store: LeaseStore,
    url: str,
    payload: dict[str, Any],
    *,
    wait: float,
    poll: float,
) -> tuple[Lease, LeaseRecord | None]:
    """Take the lease; return it and the crashed holder's record if we took one over.

    Raises LeaseBusy if a live lease stays in place for `wait` seconds.
    """
    ttl = float(payload["ttl_seconds"])
    body = encode(payload)
    deadline = time.monotonic() + max(wait, 0.0)
    clock: StoreClock | None = None
    while True:
        sent = time.monotonic()
        try:
            return Lease(store, url, payload, store.put(LEASE_KEY, body, mode="create"), sent), None
        except (AlreadyExistsError, PreconditionError):
            pass
        record = read_lease(store)
        if record is None:
            continue  # released between our put and our read: try to create it again
        if clock is None:
            clock = StoreClock.probe(store)
        if is_stale(record, clock, ttl) and record.e_tag is not None:
            sent = time.monotonic()
            try:
                written = store.put(LEASE_KEY, body, mode=record.update_version())
            except (PreconditionError, FileNotFoundError):
                continue  # renewed, released or taken over by another waiter meanwhile
            return Lease(store, url, payload, written, sent), record
        if time.monotonic() >= deadline:
            raise LeaseBusy(record, clock.age(record.last_modified), record.ttl(ttl))
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


def remove(store: LeaseStore, record: LeaseRecord, tombstone: dict[str, Any]) -> bool:
    """Remove the lease `record` describes; False if it changed since it was read.

    A plain delete could remove the lease of a waiter that took the stale one over a moment
    earlier. So the exact version we looked at is first replaced (If-Match) by a fresh
    `tombstone` lease, which no waiter may take over for its ttl, and that is deleted.
    """
    try:
        store.put(LEASE_KEY, encode(tombstone), mode=record.update_version())
    except (PreconditionError, FileNotFoundError):
        return False
    store.delete(LEASE_KEY)
    return True


def new_token() -> str:
    return secrets.token_hex(16)
