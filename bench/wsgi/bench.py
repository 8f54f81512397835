#!/usr/bin/env python3
"""What `WSGIApplicationWrapper` costs a request, against the bare
application and the 2012 wrapper, in the same process and run.

    pip install ./python-binding && python3 bench/wsgi/bench.py [--requests 2000] [--repeat 301] [--memory 1000000] [--gevent]

Each application is called directly in a loop, the way a PEP 3333 server
(gunicorn's sync worker) calls it: call it with an environ and a
`start_response`, check whether the response is the environ's
`wsgi.file_wrapper`, iterate it to the end, call its `close()`. Three
variants of one application, timed interleaved (`--repeat` rounds, each
timing `--requests` requests of every variant in turn):

* bare: the application itself;
* ispyd: `ispyd.plugins.wsgi.WSGIApplicationWrapper(application)`;
* 2012: the 2012 ispyd's wrapper, ported to Python 3 as it was (its debug
  leftovers removed): a transaction object with a `__del__`, registered in a
  class-level dict under a lock, and a response object whose `__iter__` is a
  generator re-yielding every chunk; `__exit__` appends the traceback (None)
  to a module list that is never emptied.

The application returns a list of 1 or of 100 chunks (what a plain WSGI
function returns), or a generator of 100 chunks (the shape of a framework's
response object: no `len()`). Each loop is timed in the thread's own CPU
time (`time.thread_time_ns()`), so that time the machine gives other
processes is not counted. Rounds time a short loop of each variant back to
back; a wrapper's overhead is the median over the rounds of its time minus
the bare application's time in the same round. The share of the machine
other processes used while the loops ran is printed with the table (from
/proc/stat less this process's own CPU time).

Then `--memory` requests (each with a fresh copy of the environ, as a
server makes) go through each wrapper after a warm-up, and the process's
resident memory is read before and after; for ispyd, the number of
requests still registered at the end.

Prints Markdown.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

from ispyd.plugins.wsgi import WSGIApplicationWrapper, active_request_count


class FileWrapper:
    """gunicorn's `wsgi.file_wrapper`: the class servers check responses
    against."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close


ENVIRON: Dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1:8000",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": None,
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
}

HEADERS = [("Content-Type", "text/plain")]


def start_response(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
    return _write


def _write(data: bytes) -> None:
    pass


def list_app(chunks: int) -> Callable:
    body = [b"x" * 64 for _ in range(chunks)]

    def application(environ: dict, start_response: Callable) -> list:
        start_response("200 OK", HEADERS)
        return body

    return application


def generator_app(chunks: int) -> Callable:
    chunk = b"x" * 64

    def application(environ: dict, start_response: Callable):
        start_response("200 OK", HEADERS)
        for _ in range(chunks):
            yield chunk

    return application


# The 2012 wrapper (ispyd/plugins/wsgi.py), in Python 3. `ObjectWrapper`'s
# attribute proxying is left out: it costs nothing per request.

_exceptions: List[Any] = []


class WSGITransaction:
    request_lock = threading.Lock()
    request_count = 0

    transactions: Dict[int, "WSGITransaction"] = {}

    def __init__(self, environ: dict) -> None:
        self.environ = environ
        self.thread_id = threading.get_ident()
        self.deleted = False
        self.running = False
        self.start = 0.0
        self.finish = 0.0
        with self.request_lock:
            WSGITransaction.request_count += 1
            self.request_id = WSGITransaction.request_count

    def __del__(self) -> None:
        self.deleted = True
        if self.running:
            self.__exit__(None, None, None)

    def __enter__(self) -> "WSGITransaction":
        self.transactions[self.request_id] = self
        self.running = True
        self.start = time.time()
        return self

    def __exit__(self, exc: Any, value: Any, tb: Any) -> None:
        _exceptions.append(tb)
        self.running = False
        self.finish = time.time()
        if not self.deleted:
            try:
                del self.transactions[self.request_id]
            except KeyError:
                pass


class WSGIApplicationIterable:
    def __init__(self, transaction: WSGITransaction, iterable: Any) -> None:
        self.transaction = transaction
        self.iterable = iterable

    def __iter__(self):
        for item in self.iterable:
            yield item

    def close(self) -> None:
        try:
            if hasattr(self.iterable, "close"):
                self.iterable.close()
        except BaseException:
            self.transaction.__exit__(*sys.exc_info())
            raise
        else:
            self.transaction.__exit__(None, None, None)


class SeedWrapper:
    def __init__(self, wrapped: Callable) -> None:
        self._ispyd_next_object = wrapped

    def __call__(self, environ: dict, start_response: Callable) -> WSGIApplicationIterable:
        transaction = WSGITransaction(environ)
        transaction.__enter__()
        try:
            iterable = self._ispyd_next_object(environ, start_response)
        except BaseException:
            transaction.__exit__(*sys.exc_info())
            raise
        return WSGIApplicationIterable(transaction, iterable)


def serve(application: Callable, requests: int, fresh_environ: bool = False) -> None:
    """What gunicorn's sync worker does per request, minus the socket."""
    environ = ENVIRON
    file_wrapper = environ["wsgi.file_wrapper"]
    for _ in range(requests):
        if fresh_environ:
            environ = dict(ENVIRON)
        response = application(environ, start_response)
        try:
            if isinstance(response, file_wrapper):
                raise AssertionError("no file responses here")
            for chunk in response:
                pass
        finally:
            if hasattr(response, "close"):
                response.close()


def check(variants: Dict[str, Callable]) -> None:
    """Every variant gives the same chunks and ends every request."""
    expected = None
    for label, application in variants.items():
        response = application(dict(ENVIRON), start_response)
        chunks = list(response)
        if hasattr(response, "close"):
            response.close()
        if expected is None:
            expected = chunks
        elif chunks != expected:
            raise SystemExit(f"bench.py: {label} changed the response")
    if active_request_count() != 0:
        raise SystemExit("bench.py: a request is still registered after close()")


def time_shape(application: Callable, requests: int, repeat: int) -> Dict[str, float]:
    """Per request, in ns: each variant's median time, and each wrapper's
    median overhead over the bare application (`ispyd+`, `2012+`).

    A round times a short loop of every variant back to back, in an order
    that rotates from round to round; a wrapper's overhead in a round is its
    time minus the bare application's in the same round, so that the
    machine speeding up or slowing down between rounds (it is shared) falls
    on both sides of each difference."""
    variants = {
        "bare": application,
        "ispyd": WSGIApplicationWrapper(application),
        "2012": SeedWrapper(application),
    }
    check(variants)
    for variant in variants.values():  # warm-up
        serve(variant, requests)
    labels = list(variants)
    samples: Dict[str, List[float]] = {label: [] for label in labels}
    for round_number in range(repeat):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.thread_time_ns()
            serve(variants[label], requests)
            samples[label].append((time.thread_time_ns() - start) / requests)
    result = {label: statistics.median(values) for label, values in samples.items()}
    for label in ("ispyd", "2012"):
        result[label + "+"] = statistics.median(
            wrapped - bare for wrapped, bare in zip(samples[label], samples["bare"])
        )
    return result


def cpu_ticks() -> Tuple[int, int, int]:
    """(busy ticks of the machine, all ticks of the machine, ticks of this
    process), from /proc/stat and /proc/self/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = sum(fields[:3]) + sum(fields[5:8])
    total = busy + fields[3] + fields[4]
    with open("/proc/self/stat") as stat:
        own = stat.read().rsplit(")", 1)[1].split()
    return busy, total, int(own[11]) + int(own[12])


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("bench.py: no VmRSS in /proc/self/status")


def memory(application: Callable, requests: int) -> Dict[str, int]:
    serve(application, min(requests, 100_000), fresh_environ=True)  # warm-up
    gc.collect()
    before = rss_kib()
    serve(application, requests, fresh_environ=True)
    gc.collect()
    after = rss_kib()
    return {"before": before, "after": after}


SHAPES: Dict[str, Callable[[], Callable]] = {
    "list1": lambda: list_app(1),
    "list100": lambda: list_app(100),
    "generator100": lambda: generator_app(100),
}

WRAPPERS: Dict[str, Callable[[Callable], Callable]] = {
    "bare": lambda application: application,
    "ispyd": WSGIApplicationWrapper,
    "2012": SeedWrapper,
}


def serve_only(variant: str, shape: str, requests: int) -> None:
    """`--serve`: serves `requests` requests and nothing else, for
    instructions.sh to count under callgrind."""
    application = WRAPPERS[variant](SHAPES[shape]())
    serve(application, requests)
    if active_request_count() != 0:
        raise SystemExit("bench.py: a request is still registered")


def in_gevent_greenlet(function: Callable[..., None], *args: Any) -> None:
    """Runs `function(*args)` monkey-patched by gevent, in a spawned
    greenlet, where the ispyd wrapper records each request's greenlet."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    gevent.spawn(function, *args).get()


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve_args = (sys.argv[2], sys.argv[3], int(sys.argv[4]))
        if sys.argv[5:6] == ["--gevent"]:
            in_gevent_greenlet(serve_only, *serve_args)
        else:
            serve_only(*serve_args)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000,
                        help="requests per timed loop (default 2000)")
    parser.add_argument("--repeat", type=int, default=301,
                        help="rounds, each timing one loop of every variant, per shape (default 301)")
    parser.add_argument("--memory", type=int, default=1_000_000,
                        help="requests through each wrapper for the memory check (default 1000000)")
    parser.add_argument("--gevent", action="store_true",
                        help="monkey-patch with gevent and make the requests in a greenlet that is "
                             "not its thread's main one, as gunicorn -k gevent does (the wrapper "
                             "then records the greenlet)")
    args = parser.parse_args()
    if args.gevent:
        in_gevent_greenlet(report, args)
    else:
        report(args)


def report(args: argparse.Namespace) -> None:

    shapes = [
        ("list of 1 chunk", list_app(1)),
        ("list of 100 chunks", list_app(100)),
        ("generator of 100 chunks", generator_app(100)),
    ]
    before = cpu_ticks()
    rows = [(name, time_shape(app, args.requests, args.repeat)) for name, app in shapes]
    after = cpu_ticks()
    others = ((after[0] - before[0]) - (after[2] - before[2])) / max(1, after[1] - before[1])

    if args.gevent:
        print("Under gevent (monkey-patched), the requests made in a spawned greenlet.")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; other processes used "
          f"{others:.0%} of the machine during the timing; medians over {args.repeat} rounds "
          f"of {args.requests} requests of each variant, in thread CPU time")
    print()
    print("| response | bare app | ispyd wrapper | 2012 wrapper | ispyd overhead | 2012 overhead |")
    print("|---|--:|--:|--:|--:|--:|")
    for name, row in rows:
        print(f"| {name} | {row['bare'] / 1e3:.3f} µs | {row['ispyd'] / 1e3:.3f} µs | "
              f"{row['2012'] / 1e3:.3f} µs | **{row['ispyd+'] / 1e3:.3f} µs** | "
              f"{row['2012+'] / 1e3:.3f} µs |")

    print()
    print(f"Memory over {args.memory:,} requests (list of 1 chunk, a fresh environ each), "
          "after a warm-up:")
    print()
    print("| wrapper | RSS before | RSS after | growth | still registered |")
    print("|---|--:|--:|--:|--:|")
    app = list_app(1)
    for label, wrapper in (("ispyd", WSGIApplicationWrapper(app)), ("2012", SeedWrapper(app))):
        found = memory(wrapper, args.memory)
        registered = (str(active_request_count()) if label == "ispyd"
                      else f"{len(WSGITransaction.transactions)} (and {len(_exceptions):,} list entries)")
        print(f"| {label} | {found['before'] / 1024:.1f} MiB | {found['after'] / 1024:.1f} MiB | "
              f"{(found['after'] - found['before']) / 1024:+.1f} MiB | {registered} |")


if __name__ == "__main__":
    main()
