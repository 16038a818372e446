"""Stage 1 of the WebDataset reader, remote part: shards read from a server.

``http://`` / ``https://`` shards are fetched with :mod:`http.client` (separate
connect and read timeouts, redirects followed), ``pipe:`` shards (e.g. ``pipe:curl
-fsS https://...``) run through ``webdataset.gopen``. Both are wrapped in
:class:`RetryingShardStream`, which retries a fault with bounded exponential
backoff (:class:`FetchPolicy`) and **continues at the byte it had reached**: an
HTTP retry asks for ``Range: bytes=<position>-`` (a server that ignores ranges
answers 200, and the bytes already read are read again and dropped; so are a
``pipe:`` command's). The tar reader above therefore never sees a seam: no sample
is lost or yielded twice by a retried fault.

When a shard's retries are spent, :class:`ShardFetchError` is raised; its message
starts with the fault's kind (the skip kind, see
:func:`~rils_mm.datasets.utils.skip_kind`):

========================  =======================================================
kind                      fault
========================  =======================================================
``connection refused``    nothing listens at the host / port (curl exit 7)
``connect timeout``       no connection within ``connect_timeout``
``connection reset``      the server reset or closed the connection before the
                          end of the shard (curl exit 18, 52, 56)
``stalled transfer``      no byte for ``read_timeout`` seconds (curl exit 28)
``http <status>``         an HTTP error status such as ``http 404``, ``http 503``
                          (curl ``-f`` exit 22: ``http error``)
``unknown host``          the host name does not resolve (curl exit 6)
``connection error``      any other socket / protocol / ``pipe:`` failure
========================  =======================================================

The reader (:func:`~rils_mm.datasets.webdataset.shards.read_shards`,
:func:`~rils_mm.datasets.webdataset.samples.iter_shard_samples`) counts it as one
skip of that kind: a shard that never opened is skipped; a shard that broke
mid-way keeps the samples already yielded, loses the incomplete one (counted) and
skips the rest.
"""
import http.client
import logging
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional
from urllib.parse import urljoin, urlsplit

import webdataset as wds
from mmengine.logging import print_log

__all__ = ['FetchPolicy', 'ShardFetchError', 'RetryingShardStream', 'ShardOpener',
           'fault_kind']

#: curl's exit codes (``pipe:curl ...``) and their fault kinds.
CURL_EXIT_KINDS = {6: 'unknown host', 7: 'connection refused', 18: 'connection reset',
                   22: 'http error', 28: 'stalled transfer', 52: 'connection reset',
                   56: 'connection reset'}
#: HTTP statuses worth asking again (the others of 4xx would not change).
RETRY_4XX = (408, 425, 429)
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class FetchPolicy:
    """How remote shards are fetched.

    Attributes:
        max_retries (int): Retries of one shard, all its faults together (so at
            most ``1 + max_retries`` requests per shard). Defaults to 5.
        backoff_base (float): Seconds before the first retry; retry ``k`` waits
            ``min(backoff_max, backoff_base * 2**k)``. Defaults to 1.
        backoff_max (float): Longest wait between two requests. Defaults to 30.
        connect_timeout (float): Seconds to connect (TLS handshake included).
            Defaults to 10.
        read_timeout (float): Seconds without a byte before a transfer counts as
            stalled. Defaults to 60.
    """

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f'fetch: max_retries must be an int >= 0, got {self.max_retries!r}')
        for name in ('backoff_base', 'backoff_max', 'connect_timeout', 'read_timeout'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or (
                    name.endswith('timeout') and value == 0):
                raise ValueError(f'fetch: {name} must be a number > 0 (>= 0 for '
                                 f'backoff_*), got {value!r}')

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        return min(self.backoff_max, self.backoff_base * 2 ** retry)


class ShardFetchError(OSError):
    """A shard could not be (fully) fetched; ``str(exc)`` starts with ``kind:``."""

    def __init__(self, kind: str, url: str, detail: str, requests: int,
                 position: int) -> None:
        self.kind, self.url, self.requests, self.position = kind, url, requests, position
        super().__init__(f'{kind}: {url} ({detail}; gave up after {requests} '
                         f'request(s), {position} bytes read)')


class HTTPStatusError(OSError):
    """An HTTP answer that is not the shard."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(f'HTTP {status} {reason}')


class ConnectTimeout(OSError):
    """No connection within ``connect_timeout``."""


class ClosedEarly(ConnectionResetError):
    """The server closed the connection before the announced length."""


class PipeExit(OSError):
    """A ``pipe:`` command exited with an error status."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f'command exit status {status}')


def fault_kind(exn: BaseException) -> str:
    """The kind of a fetch fault (the table of the module docstring)."""
    if isinstance(exn, HTTPStatusError):
        return f'http {exn.status}'
    if isinstance(exn, PipeExit):
        return CURL_EXIT_KINDS.get(exn.status, 'connection error')
    if isinstance(exn, ConnectTimeout):
        return 'connect timeout'
    if isinstance(exn, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exn, (ConnectionError, http.client.IncompleteRead)):
        return 'connection reset'
    if isinstance(exn, (TimeoutError, socket.timeout)):
        return 'stalled transfer'
    if isinstance(exn, socket.gaierror):
        return 'unknown host'
    return 'connection error'


def _retryable(exn: BaseException) -> bool:
    if isinstance(exn, HTTPStatusError):
        return exn.status >= 500 or exn.status in RETRY_4XX
    return isinstance(exn, (OSError, http.client.HTTPException, ssl.SSLError))


# ------------------------------------------------------------------ HTTP(S)
class _HTTPBody:
    """The body of one HTTP answer; a short body raises :class:`ClosedEarly`."""

    def __init__(self, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse) -> None:
        self.conn, self.resp = conn, resp

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.resp.read()  # IncompleteRead if short
        data = self.resp.read(size)
        if not data and size and self.resp.length:  # bytes announced, none came
            raise ClosedEarly(f'connection closed with {self.resp.length} bytes '
                              'of the answer missing')
        return data

    def close(self) -> None:
        self.conn.close()


def open_http(url: str, offset: int, policy: FetchPolicy, max_redirects: int = 5) -> _HTTPBody:
    """GET ``url`` from byte ``offset`` on (``Range``), following redirects."""
    for _ in range(max_redirects + 1):
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == 'https' else \
            http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=policy.connect_timeout)
        try:
            try:
                conn.connect()
            except (TimeoutError, socket.timeout) as exn:
                raise ConnectTimeout(f'no connection within {policy.connect_timeout} s') \
                    from exn
            conn.sock.settimeout(policy.read_timeout)
            target = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
            headers = {'Range': f'bytes={offset}-'} if offset else {}
            conn.request('GET', target, headers=headers)
            resp = conn.getresponse()
            location = resp.getheader('Location')
            if resp.status in _REDIRECTS and location:
                conn.close()
                url = urljoin(url, location)
                continue
            body = _HTTPBody(conn, resp)
            if resp.status == 206 and offset:
                start = (resp.getheader('Content-Range') or '').partition(' ')[2]
                if not start.startswith(f'{offset}-'):
                    raise http.client.HTTPException(
                        f'asked for bytes {offset}-, got Content-Range {start!r}')
            elif resp.status == 200:
                _discard(body, offset)  # the server ignores ranges
            else:
                raise HTTPStatusError(resp.status, resp.reason)
            return body
        except BaseException:
            conn.close()
            raise
    raise http.client.HTTPException(f'more than {max_redirects} redirects')


# -------------------------------------------------------------------- pipe:
class _PipeBody:
    """A ``pipe:`` command's output; an error exit raises :class:`PipeExit`."""

    def __init__(self, pipe, wait: float) -> None:
        self.pipe, self.wait = pipe, wait

    def read(self, size: int = -1) -> bytes:
        data = self.pipe.stream.read(size)
        if not data and size:
            try:
                status = self.pipe.proc.wait(self.wait)
            except subprocess.TimeoutExpired:
                status = None
            if status not in (0, None):
                raise PipeExit(status)
        return data

    def close(self) -> None:
        try:
            self.pipe.stream.close()
        finally:
            if self.pipe.proc.poll() is None:
                self.pipe.proc.kill()
            self.pipe.proc.wait()


def open_pipe(url: str, offset: int, policy: FetchPolicy) -> _PipeBody:
    """Run a ``pipe:`` URL's command (``webdataset.gopen``), its first
    ``offset`` bytes dropped."""
    body = _PipeBody(wds.gopen(url), wait=policy.read_timeout)
    try:
        _discard(body, offset)
    except BaseException:
        body.close()
        raise
    return body


def _discard(body, count: int) -> None:
    while count > 0:
        data = body.read(min(count, 1 << 20))
        if not data:
            raise ClosedEarly(f'the answer ended before byte {count}')
        count -= len(data)


# -------------------------------------------------------------------- retries
class RetryingShardStream:
    """A readable shard that reconnects on faults and continues where it was.

    Args:
        url (str): The shard.
        open_at (callable): ``open_at(url, offset, policy)`` -> a stream of the
            shard from byte ``offset`` on (:func:`open_http`, :func:`open_pipe`).
        policy (FetchPolicy): Retries and timeouts.
        sleep (callable): ``time.sleep`` (tests count the waits).

    Raises:
        ShardFetchError: From the constructor (the shard does not open) or from
            :meth:`read` (it broke and the retries are spent).
    """

    def __init__(self, url: str, open_at: Callable, policy: FetchPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url, self.open_at, self.policy, self.sleep = url, open_at, policy, sleep
        self.position = 0  # bytes handed out
        self.requests = 0
        self.retries = 0
        self._body: Optional[BinaryIO] = None
        self._retrying(lambda: b'')  # connect now: a shard that fails here is skipped whole

    def _retrying(self, read: Callable[[], bytes]) -> bytes:
        while True:
            try:
                if self._body is None:
                    self.requests += 1
                    self._body = self.open_at(self.url, self.position, self.policy)
                return read()
            except Exception as exn:  # noqa: BLE001 - classified below
                self._drop()
                kind = fault_kind(exn)
                if not _retryable(exn) or self.retries >= self.policy.max_retries:
                    raise ShardFetchError(kind, self.url, f'{type(exn).__name__}: {exn}',
                                          self.requests, self.position) from exn
                wait = self.policy.delay(self.retries)
                self.retries += 1
                print_log(f'WebImageTextDataset: {kind}: {self.url} at byte '
                          f'{self.position} ({exn}); retry {self.retries} of '
                          f'{self.policy.max_retries} in {wait:.2g} s',
                          logger='current', level=logging.WARNING)
                self.sleep(wait)

    def read(self, size: int = -1) -> bytes:
        data = self._retrying(lambda: self._body.read(size))
        self.position += len(data)
        return data

    def _drop(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            try:
                body.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def close(self) -> None:
        self._drop()


class ShardOpener:
    """``open_fn`` of the reader: remote shards with retries (:class:`FetchPolicy`'s
    arguments), everything else with ``webdataset.gopen`` (local paths, ``file:``)."""

    def __init__(self, **policy) -> None:
        try:
            self.policy = FetchPolicy(**policy)
        except TypeError:
            raise TypeError(f'fetch: unknown option(s) {sorted(policy)}; expected some of '
                            f'{list(FetchPolicy.__dataclass_fields__)}') from None

    def __call__(self, url: str) -> BinaryIO:
        if url.startswith(('http://', 'https://')):
            return RetryingShardStream(url, open_http, self.policy)
        if url.startswith('pipe:'):
            return RetryingShardStream(url, open_pipe, self.policy)
        return wds.gopen(url)
