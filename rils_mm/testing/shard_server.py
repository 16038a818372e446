"""A shard server on 127.0.0.1 for tests: serves bytes by path and injects faults.

    with ShardServer({'/a.tar': data}) as server:
        server.fail('/a.tar', ('status', 500))          # the next request only
        server.fail('/a.tar', ('reset', 3000), always=True)
        url = server.url('/a.tar')

Faults (each applies to one request; ``always=True``: to every request):

* ``('status', code)``: answer with that HTTP status;
* ``('reset', at)``: send the shard's bytes up to byte ``at`` of the file (counted
  from its start, so a ranged retry from beyond it gets none), then reset the
  connection (``SO_LINGER`` 0: an RST; data still in flight may be lost);
* ``('close', at)``: the same, closed cleanly (FIN: the bytes up to ``at`` arrive);
* ``('stall', at, seconds)``: send up to byte ``at``, then send nothing for
  ``seconds`` (cut short when the server stops).

``Range: bytes=N-`` is answered with 206 unless ``ranges=False`` (then the whole
file, 200). ``requests`` counts the requests per path, ``ranges_asked`` lists the
range starts asked per path.
"""
import socket
import struct
import threading
from collections import Counter, defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple

__all__ = ['ShardServer']


class _Handler(BaseHTTPRequestHandler):
    server: '_Server'

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        owner = self.server.owner
        path = self.path
        fault = owner._next_fault(path)
        start = 0
        header = self.headers.get('Range')
        if header and header.startswith('bytes=') and header.endswith('-'):
            start = int(header[6:-1])
        with owner.lock:
            owner.requests[path] += 1
            owner.ranges_asked[path].append(start)
        data = owner.files.get(path)
        if data is None:
            fault = fault or ('status', 404)
        if fault and fault[0] == 'status':
            self.send_error(fault[1])
            return
        if not (owner.ranges and start):
            start = 0
        if start and start >= len(data):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.send_header('Content-Length', str(len(data) - start))
        self.send_header('Content-Type', 'application/x-tar')
        self.end_headers()
        if not fault:
            self.wfile.write(data[start:])
            return
        end = max(start, fault[1])
        self.wfile.write(data[start:end])
        self.wfile.flush()
        if fault[0] == 'stall':
            owner.stopping.wait(fault[2])
        if fault[0] != 'close':
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack('ii', 1, 0))
        else:
            self.connection.shutdown(socket.SHUT_WR)
        self.close_connection = True
        self.connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: 'ShardServer'


class ShardServer:
    """Serve ``files`` (``{path: bytes}``) on ``127.0.0.1`` (a free port) in a thread."""

    def __init__(self, files: Dict[str, bytes], ranges: bool = True) -> None:
        self.files = dict(files)
        self.ranges = ranges
        self.lock = threading.Lock()
        self.requests: Counter = Counter()
        self.ranges_asked = defaultdict(list)
        self.stopping = threading.Event()
        self._once = defaultdict(deque)
        self._always: Dict[str, Tuple] = {}
        self._httpd: Optional[_Server] = None

    def fail(self, path: str, fault: Tuple, always: bool = False) -> None:
        """Inject ``fault`` into the next request of ``path`` (or every one)."""
        with self.lock:
            if always:
                self._always[path] = fault
            else:
                self._once[path].append(fault)

    def reset(self) -> None:
        """Forget the faults and the counts."""
        with self.lock:
            self._once.clear()
            self._always.clear()
            self.requests.clear()
            self.ranges_asked.clear()

    def _next_fault(self, path: str) -> Optional[Tuple]:
        with self.lock:
            if self._once[path]:
                return self._once[path].popleft()
            return self._always.get(path)

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f'http://{host}:{port}{path}'

    def __enter__(self) -> 'ShardServer':
        self._httpd = _Server(('127.0.0.1', 0), _Handler)
        self._httpd.owner = self
        threading.Thread(target=self._httpd.serve_forever, kwargs=dict(poll_interval=0.05),
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
