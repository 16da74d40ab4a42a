"""Many gateways' sessions at once on one thread: gateway.py's steps driven by readiness (selectors).

check reads every host at once. With a thread a host (gateway.concurrently) a check of 500 spent its CPU on the
threads and its time in waves of `check.concurrency` of them (docs/benchmarks.md "check over 500"). Here each
host's steps (gateway.connect_steps, Connection.call_many_steps, check.read_host_steps) run until they wait: on
the wire in a selector, on the clock in a heap of deadlines. Sockets are non-blocking, TLS is agreed on readiness,
and what fails is thrown into that host's steps, so each error is the sentence gateway.py says on a blocking
socket. At most `cap` hosts are under way at once; one host's failure is its own result.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import selectors
import socket
import time

from guardian.adapters import gateway, wire

BLOCK = 65536
DESCRIPTORS_KEPT = 100  # left for everything else a check or serve opens: state files, SQLite, HTTP, TLS files
_PARKED = object()  # a step that waits: its host's steps resume when the wire or the clock answers
_WOULD_BLOCK = (BlockingIOError, InterruptedError)  # and TLS's own (_tls_pause); ssl is loaded for wss:// only


def run_all(all_steps: list, cap: int) -> list:
    """What each host's steps return, or the exception they raised, in order; at most `cap` of them under way, and
    never more than the process may open files (each is a socket), so no host fails for want of a descriptor."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft - DESCRIPTORS_KEPT)
    return _Poller().run(all_steps, max(1, cap))


class _Socket:
    """One gateway's connection as the poller makes it: TCP connect, TLS (wss://), the upgrade, then frames."""

    def __init__(self, host, task):
        self.host, self.task = host, task  # the host's steps that opened it
        self.upgrade = gateway.Upgrade.of(host)
        self.addresses = [(info[0], info[4]) for info in socket.getaddrinfo(self.upgrade.hostname, self.upgrade.port,
                                                                            type=socket.SOCK_STREAM)]
        self.sock: socket.socket | None = None
        self.stage = "connect"  # then "tls" (wss://), "upgrade", "open"; "closed" at the end
        self.tls_wants_write = False
        self.outgoing = bytearray()
        self.answer = bytearray()  # the upgrade's, until it is whole
        self.end: wire.ClientEnd | None = None
        self.failure: Exception | None = None  # the wire broke: thrown at the next step that needs it
        self.registered = 0

    def peer_certificate(self) -> bytes | None:
        return self.sock.getpeercert(binary_form=True)


class _Task:
    """One host's steps: the step it waits on (and the socket, for one on the wire), and a generation that outdates
    the timers it set before."""

    __slots__ = ("index", "steps", "step", "on", "generation", "sockets", "done")

    def __init__(self, index: int, steps):
        self.index, self.steps, self.step, self.on, self.generation, self.sockets = index, steps, None, None, 0, []
        self.done = False


class _Poller:
    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.timers: list = []  # (when, seq, task, generation)
        self.seq = itertools.count()
        self.waiting_on: dict[_Socket, _Task] = {}
        self.running = 0

    def run(self, all_steps: list, cap: int) -> list:
        self.results: list = [None] * len(all_steps)
        self.queue = iter(enumerate(all_steps))
        self.tasks: list[_Task] = []
        self.drained = False  # every host's steps started
        cap = max(1, cap)
        try:
            while True:
                while self.running < cap and self._start_next():
                    pass  # a host whose steps end at once (a name that does not resolve) makes room at once
                if not self.running:
                    break
                self._fire_timers()
                if not self.running or (self.running < cap and not self.drained):
                    continue  # done, or room for the next host
                timeout = max(0.0, self.timers[0][0] - time.monotonic()) if self.timers else None
                for key, events in self.selector.select(None if timeout == float("inf") else timeout):
                    sock = key.data
                    try:
                        self._service(sock, events)
                    except Exception as exc:  # a fault of the poller's own meeting this host: its error alone
                        self._fail(sock.task, exc)
        finally:
            for task in self.tasks:
                for sock in task.sockets:
                    self._shut(sock)
            self.selector.close()
        return self.results

    # --- tasks ---------------------------------------------------------------------------------------

    def _start_next(self) -> bool:
        index, steps = next(self.queue, (None, None))
        if steps is None:
            self.drained = True
            return False
        task = _Task(index, steps)
        self.tasks.append(task)
        self.running += 1
        self._resume(task)
        return True

    def _resume(self, task: _Task, value=None, error: Exception | None = None) -> None:
        """Run the host's steps until one waits; the ones that can be done at once are done at once."""
        task.step, task.on, task.generation = None, None, task.generation + 1
        while True:
            try:
                step = task.steps.send(value) if error is None else task.steps.throw(error)
            except StopIteration as done:
                return self._finish(task, done.value)
            except Exception as exc:  # isolated per host, reported by the caller as that host's error
                return self._finish(task, exc)
            value = error = None
            try:
                outcome = self._begin(task, step)
            except Exception as exc:  # thrown into the steps, which say what it means for this host
                error = exc
                continue
            if outcome is _PARKED:
                task.step = step
                return
            value = outcome

    def _fail(self, task: _Task, exc: Exception) -> None:
        if not task.done:
            task.steps.close()  # its steps were waiting at a yield: closed there, they do nothing more
            self._finish(task, exc)

    def _finish(self, task: _Task, result) -> None:
        task.done = True
        self.results[task.index] = result
        for sock in task.sockets:  # steps that raised before closing: their socket goes with them
            self._shut(sock)
        task.sockets = []
        self.running -= 1

    def _begin(self, task: _Task, step):
        kind = type(step)
        if kind is gateway.Receive:
            return self._receive(task, step.ws, step.deadline)
        if kind is gateway.Send:
            sock = step.ws
            if sock.failure:
                raise sock.failure
            sock.end.send_text(step.data)  # sent when the steps next wait: a round's requests in one write
            return None
        if kind is gateway.Wait:
            for sock in task.sockets:
                self._flush_quietly(sock)
            self._timer(task, time.monotonic() + step.seconds)
            return _PARKED
        if kind is gateway.Open:
            sock = _Socket(step.host, task)
            task.sockets.append(sock)
            self._connect(sock, task)
            self._timer(task, step.deadline)
            return _PARKED
        return self._close(task, step.ws, step.timeout)

    def _receive(self, task: _Task, sock: _Socket, deadline: float):
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out")
        message = self._arrived(sock)
        if message is not None:
            return message
        self._wait_on(sock, task)
        self._timer(task, deadline)
        return _PARKED

    def _arrived(self, sock: _Socket):
        """The next message come, or None while none has; raises what broke the wire once nothing is left."""
        message = sock.end.next_message()
        self._flush_quietly(sock)  # what the steps sent, a pong, the answer to the gateway's close
        if message is None and sock.failure:
            raise sock.failure
        return message

    def _close(self, task: _Task, sock: _Socket, timeout: float):
        if sock.end is not None and not sock.failure and not sock.end.close_received:
            sock.end.send_close()
            self._flush_quietly(sock)
            if not sock.failure:
                self._wait_on(sock, task)
                self._timer(task, time.monotonic() + timeout)
                return _PARKED
        self._shut(sock)
        return None

    # --- the clock -----------------------------------------------------------------------------------

    def _timer(self, task: _Task, when: float) -> None:
        heapq.heappush(self.timers, (when, next(self.seq), task, task.generation))

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, task, generation = heapq.heappop(self.timers)
            if generation != task.generation or task.step is None:
                continue  # the task moved on since
            try:
                self._timed_out(task)
            except Exception as exc:  # as in run(): this host's error alone
                self._fail(task, exc)

    def _timed_out(self, task: _Task) -> None:
        kind, sock = type(task.step), task.on
        if kind is gateway.Wait:
            return self._resume(task)
        self._unwait(sock)
        if kind is not gateway.Receive:  # a close not answered in time, or a connection not made
            self._shut(sock)
        self._resume(task, error=None if kind is gateway.Close else TimeoutError("timed out"))

    # --- the wire ------------------------------------------------------------------------------------

    def _connect(self, sock: _Socket, task: _Task) -> None:
        """Start a non-blocking connect to the next of the host's addresses that takes one (create_connection's
        order); when none is left, the last one's failure is raised."""
        while True:
            family, address = sock.addresses.pop(0)
            sock.sock = socket.socket(family, socket.SOCK_STREAM)
            sock.sock.setblocking(False)
            sock.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each request goes out at once
            sock.stage = "connect"
            code = sock.sock.connect_ex(address)
            if code in (0, errno.EINPROGRESS):
                break
            sock.sock.close()
            if not sock.addresses:
                sock.stage = "closed"
                raise OSError(code, os.strerror(code))  # ECONNREFUSED becomes ConnectionRefusedError
        self._wait_on(sock, task)
        self._update(sock)

    def _service(self, sock: _Socket, events: int) -> None:
        if sock.stage == "closed":
            return  # shut by an earlier event of the same select
        task = self.waiting_on.get(sock)
        try:
            if sock.stage == "connect":
                self._connected(sock)
            if sock.stage == "tls":
                self._handshake(sock)
            if sock.stage in ("upgrade", "open"):
                if events & selectors.EVENT_WRITE:
                    self._flush(sock)
                if events & selectors.EVENT_READ:
                    self._read(sock)
        except Exception as exc:
            stage = sock.stage
            if stage == "open":
                sock.failure = sock.failure or exc
            else:  # the Open step failed: the TCP connect to the next address (as create_connection), or its error
                self._shut(sock)
                if sock.addresses and stage == "connect" and isinstance(exc, OSError):
                    try:
                        self._connect(sock, task)
                        return
                    except OSError as again:
                        exc = again
                self._unwait(sock)
                return self._resume(task, error=exc)
        if task is None:
            return self._update(sock)
        step = task.step
        if type(step) is gateway.Open:
            if sock.stage == "open":
                self._unwait(sock)
                return self._resume(task, sock)
        elif type(step) is gateway.Receive:
            try:
                message = self._arrived(sock)
            except Exception as exc:
                self._unwait(sock)
                return self._resume(task, error=exc)
            if message is not None:
                self._unwait(sock)
                return self._resume(task, message)
        elif type(step) is gateway.Close:
            try:
                while not sock.end.close_received and sock.end.next_message() is not None:
                    pass  # what came before the gateway's close: nobody is waiting for it
            except wire.WireError:
                sock.failure = sock.failure or wire.WireError("a malformed frame while closing")
            if sock.end.close_received or sock.failure:
                self._unwait(sock)
                self._shut(sock)
                return self._resume(task)
        self._update(sock)

    def _connected(self, sock: _Socket) -> None:
        code = sock.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))  # ECONNREFUSED becomes ConnectionRefusedError
        if sock.upgrade.tls:
            self.selector.unregister(sock.sock)  # wrap_socket takes the descriptor from the plain socket
            sock.registered = 0
            sock.sock = gateway.tls_context(sock.host).wrap_socket(
                sock.sock, server_hostname=sock.upgrade.hostname, do_handshake_on_connect=False)
            sock.stage = "tls"
        else:
            self._start_upgrade(sock)

    def _handshake(self, sock: _Socket) -> None:
        try:
            sock.sock.do_handshake()
        except OSError as exc:
            pause = _tls_pause(exc)
            if pause is None:
                raise
            sock.tls_wants_write = pause == "write"
            return
        self._start_upgrade(sock)

    def _start_upgrade(self, sock: _Socket) -> None:
        sock.stage = "upgrade"
        sock.outgoing += sock.upgrade.request
        self._flush(sock)

    def _read(self, sock: _Socket) -> None:
        """What the socket has, into the upgrade or the frames. A short read took everything the kernel had (the
        selector tells of more), but TLS may hold decrypted bytes the selector cannot see: read on while it does."""
        while True:
            try:
                block = sock.sock.recv(BLOCK)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                pause = _tls_pause(exc) if sock.upgrade.tls else None
                if pause == "end":
                    block = b""
                elif pause is None:
                    raise
                else:
                    return
            if not block:
                raise wire.WireError("the connection was closed without a close frame" if sock.stage == "open"
                                     else "the connection closed during the WebSocket upgrade")
            if sock.stage == "open":
                sock.end.feed(block)
            else:
                sock.answer += block
                if wire.read_upgrade(sock.answer, sock.upgrade.key):
                    sock.end, sock.answer = wire.ClientEnd(bytes(sock.answer)), bytearray()
                    sock.stage = "open"
            if len(block) < BLOCK and not (sock.upgrade.tls and sock.sock.pending()):
                return

    def _flush(self, sock: _Socket) -> None:
        """Send what waits, as far as the socket takes it now; the rest when it is writable. Raises when broken."""
        if sock.end is not None and sock.end.outgoing:
            sock.outgoing += sock.end.take_outgoing()
        if not sock.outgoing and sock.registered != selectors.EVENT_WRITE | selectors.EVENT_READ:
            return  # nothing to send, and the selector is not waiting to send it
        while sock.outgoing:
            try:
                sent = sock.sock.send(sock.outgoing)
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                if not sock.upgrade.tls or _tls_pause(exc) not in ("read", "write"):
                    raise
                break
            del sock.outgoing[:sent]
        self._update(sock)

    def _flush_quietly(self, sock: _Socket) -> None:
        try:
            self._flush(sock)
        except OSError as exc:
            sock.failure = sock.failure or exc

    def _wait_on(self, sock: _Socket, task: _Task) -> None:
        self.waiting_on[sock] = task
        task.on = sock

    def _unwait(self, sock: _Socket) -> None:
        self.waiting_on.pop(sock, None)

    def _update(self, sock: _Socket) -> None:
        """Ask the selector for what the socket needs now: writable to connect or send; readable all the time once
        connected (what comes while nobody waits is decoded for the next step: no churn of registrations)."""
        if sock.stage == "closed":
            return
        if sock.stage == "connect":
            events = selectors.EVENT_WRITE
        elif sock.stage == "tls":
            events = selectors.EVENT_WRITE if sock.tls_wants_write else selectors.EVENT_READ
        else:
            events = selectors.EVENT_READ | (
                selectors.EVENT_WRITE if sock.outgoing or (sock.end and sock.end.outgoing) else 0)
        if events == sock.registered:
            return
        if not events:
            self.selector.unregister(sock.sock)
        elif sock.registered:
            self.selector.modify(sock.sock, events, sock)
        else:
            self.selector.register(sock.sock, events, sock)
        sock.registered = events

    def _shut(self, sock: _Socket) -> None:
        if sock.stage == "closed":
            return
        self.waiting_on.pop(sock, None)
        if sock.registered:
            self.selector.unregister(sock.sock)
            sock.registered = 0
        if sock.sock is not None:
            sock.sock.close()
        sock.stage = "closed"


def _tls_pause(exc: OSError) -> str | None:
    """What a TLS socket's error means here: "read" or "write" (it needs the socket readable or writable first),
    "end" (the gateway closed TLS: an end of stream), or None (a failure)."""
    import ssl  # loaded already: only a wss:// socket raises these

    if isinstance(exc, ssl.SSLWantReadError):
        return "read"
    if isinstance(exc, ssl.SSLWantWriteError):
        return "write"
    if isinstance(exc, (ssl.SSLZeroReturnError, ssl.SSLEOFError)):
        return "end"
    return None
