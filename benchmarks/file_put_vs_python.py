#!/usr/bin/env python3
"""FileConnector put: proxy-core against Python ProxyStore, same directory, same run.

Both sides put into ONE directory, in alternating rounds (which side goes first alternates
too), so they share the disk, the minutes and the filesystem's history of deleted files.
That history matters on ext4: without a journal, every new inode skips each inode of its
block group freed in the last minutes, so a put's time depends on how much was deleted
recently in the directory's block group, not only on the code that puts.

A round: COUNT puts of SIZE bytes, timed one after another (the per-put time is their mean),
then the same keys evicted (timed apart). Python ProxyStore 1.1.0:
`Store('py', FileConnector(DIR), cache_size=0)`, `store.put(bytes)` / `store.evict(key)`.
proxy-core: `benchmarks/src/bin/file_put.rs` (a `Store` with `with_cache_size(0)` over
`FileConnector::new(DIR)`, its default options), driven round by round over a pipe.

    python3 -m venv /tmp/pyps && /tmp/pyps/bin/pip install proxystore==1.1.0
    cargo build --release -p benchmarks --bin file_put
    /tmp/pyps/bin/python benchmarks/file_put_vs_python.py --base /tmp

Options: --base DIR (the filesystem to measure, default /tmp), --rounds N (default 9),
--count N (puts per round, default 1000), --size BYTES (default 1024), --rust PATH (default
target/release/file_put), --env NAME=VALUE (for the Rust side, e.g.
PROXYSTORE_FILE_RECYCLE=0; repeatable).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def filesystem_of(path):
    """The type of the filesystem holding `path`, from /proc/mounts (longest prefix)."""
    path = os.path.realpath(path)
    best = ("", "unknown")
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point, kind = fields[1], fields[2]
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(
                    point
                ) > len(best[0]):
                    best = (point, kind)
    except OSError:
        pass
    return "%s (mounted at %s)" % (best[1], best[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="/tmp")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rust", default=None)
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()

    try:
        import proxystore
        from proxystore.connectors.file import FileConnector
        from proxystore.store import Store
    except ImportError:
        sys.exit("needs proxystore==1.1.0 in this Python (pip install proxystore==1.1.0)")

    here = os.path.dirname(os.path.abspath(__file__))
    rust = args.rust or os.path.join(here, "..", "target", "release", "file_put")
    if not os.path.exists(rust):
        sys.exit("%s missing: cargo build --release -p benchmarks --bin file_put" % rust)

    directory = tempfile.mkdtemp(prefix="file-put-", dir=args.base)
    env = dict(os.environ)
    for pair in args.env:
        name, _, value = pair.partition("=")
        env[name] = value
    child = subprocess.Popen(
        [rust, directory, str(args.size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    store = Store("py", FileConnector(directory), cache_size=0)
    data = b"x" * args.size

    def rust_round():
        child.stdin.write("round %d\n" % args.count)
        child.stdin.flush()
        put, evict, recycled = child.stdout.readline().split()
        return float(put), float(evict), int(recycled)

    def python_round():
        started = time.perf_counter()
        keys = [store.put(data) for _ in range(args.count)]
        put = (time.perf_counter() - started) / args.count * 1e6
        started = time.perf_counter()
        for key in keys:
            store.evict(key)
        evict = (time.perf_counter() - started) / args.count * 1e6
        return put, evict, 0

    print(
        "FileConnector put of %d B, %d puts per round, one directory %s on %s"
        % (args.size, args.count, directory, filesystem_of(directory))
    )
    print(
        "Python ProxyStore %s (Python %s), proxy-core %s%s; %d cores, load average %s"
        % (
            proxystore.__version__,
            sys.version.split()[0],
            rust,
            (" with " + " ".join(args.env)) if args.env else "",
            os.cpu_count(),
            open("/proc/loadavg").read().split()[0],
        )
    )
    print()
    print("| round | first | proxy-core put | Python put | Python / proxy-core | proxy-core evict | Python evict | recycled puts |")
    print("|---|---|---|---|---|---|---|---|")
    results = {"rust": [], "python": []}
    for r in range(args.rounds):
        order = ["rust", "python"] if r % 2 == 0 else ["python", "rust"]
        row = {}
        for side in order:
            row[side] = rust_round() if side == "rust" else python_round()
            results[side].append(row[side])
        print(
            "| %d | %s | %.1f us | %.1f us | %.2fx | %.1f us | %.1f us | %d |"
            % (
                r + 1,
                "proxy-core" if order[0] == "rust" else "Python",
                row["rust"][0],
                row["python"][0],
                row["python"][0] / row["rust"][0],
                row["rust"][1],
                row["python"][1],
                row["rust"][2],
            )
        )
    rust_put = statistics.median(p for p, _, _ in results["rust"])
    python_put = statistics.median(p for p, _, _ in results["python"])
    rust_evict = statistics.median(e for _, e, _ in results["rust"])
    python_evict = statistics.median(e for _, e, _ in results["python"])
    print(
        "| median | | %.1f us | %.1f us | %.2fx | %.1f us | %.1f us | |"
        % (rust_put, python_put, python_put / rust_put, rust_evict, python_evict)
    )
    child.stdin.write("quit\n")
    child.stdin.flush()
    child.wait()
    store.close()
    shutil.rmtree(directory, ignore_errors=True)
    print()
    print("load average at the end: %s" % open("/proc/loadavg").read().split()[0])


if __name__ == "__main__":
    main()
