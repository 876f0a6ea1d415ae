"""The scripted-reply helper of the flow tests: it must fail on every exchange but the right one."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from redkit.core.errors import BackendTimeout
from redkit.core.flow import Flow
from redkit.core.ops import Call, Pipeline, ScriptCall, Sleep, command
from redkit.core.scripts import Script
from support.flowdrive import ANY, Do, FlowMismatch, Like, Same, call, cmd, drive, pipeline, script

LEASE = Script("take_lease", "return 1")


def counter(key: str) -> Flow[tuple[Any, Any]]:
    count = yield command("INCR", key)
    ttl = yield command("PTTL", key)
    return count, ttl


def test_the_right_exchange_gives_the_result_and_the_ops_in_order() -> None:
    driven = drive(counter("k"), [(cmd("INCR", "k"), 3), (cmd("PTTL", "k"), 950)])
    assert driven.result == (3, 950)
    assert driven.ops == [command("INCR", "k"), command("PTTL", "k")]


def test_an_unexpected_op_fails_naming_the_step_and_the_exchange_so_far() -> None:
    with pytest.raises(FlowMismatch) as raised:
        drive(counter("k"), [(cmd("INCR", "k"), 3), (cmd("TTL", "k"), 1)])
    message = str(raised.value)
    assert "step 1" in message
    assert "cmd('PTTL', 'k')" in message
    assert "cmd('TTL', 'k')" in message
    assert "0: cmd('INCR', 'k')\n       -> 3" in message


def test_a_flow_asking_for_more_or_fewer_ops_than_the_steps_fails() -> None:
    with pytest.raises(FlowMismatch, match="more than the steps give: cmd\\('PTTL'"):
        drive(counter("k"), [(cmd("INCR", "k"), 3)])
    with pytest.raises(FlowMismatch, match="never asked:\n    cmd\\('GET', 'x'\\)"):
        drive(counter("k"), [(cmd("INCR", "k"), 3), (cmd("PTTL", "k"), 1), (cmd("GET", "x"), 1)])


@pytest.mark.parametrize(
    "expected",
    [
        Sleep(ANY),  # operations compare as tuples: a Sleep of ANY would equal any 1-tuple op
        cmd("INCR", b"k"),  # bytes are not str
        cmd("INCR"),  # too few arguments
        cmd("INCR", "k", ANY),  # too many
    ],
    ids=["other-type", "bytes-for-str", "shorter", "longer"],
)
def test_an_op_matches_only_one_of_its_own_type_and_shape(expected: Any) -> None:
    with pytest.raises(FlowMismatch, match="step 0"):
        drive(counter("k"), [(expected, 1), (cmd("PTTL", "k"), 1)])


def test_scalars_match_only_the_same_type() -> None:
    def sleeps() -> Flow[None]:
        yield Sleep(1)

    with pytest.raises(FlowMismatch):
        drive(sleeps(), [(Sleep(1.0), None)])
    with pytest.raises(FlowMismatch):
        drive(sleeps(), [(Sleep(True), None)])
    drive(sleeps(), [(Sleep(1), None)])


def test_script_and_call_matchers_check_name_keys_args_and_function() -> None:
    def loader() -> None:  # pragma: no cover - answered by the steps
        pass

    def flow() -> Flow[Any]:
        won = yield ScriptCall(LEASE, ("{k}#lease",), ("tok", 100))
        both = yield Pipeline((ScriptCall(LEASE, ("a",), ()), command("GET", "b")))
        value = yield Call(loader, (1,), {"x": 2})
        return won, both, value

    steps: list[tuple[Any, Any]] = [
        (script("take_lease", ("{k}#lease",), (ANY, 100)), 1),
        (pipeline(script("take_lease", ("a",)), cmd("GET", "b")), [1, b"v"]),
        (call(loader, (1,), {"x": 2}), "loaded"),
    ]
    assert drive(flow(), steps).result == (1, [1, b"v"], "loaded")
    for index, wrong in [
        (0, script("release_lease", ("{k}#lease",))),
        (0, script("take_lease", ("other",))),
        (1, pipeline(script("take_lease", ("a",)), cmd("GET", "b"), transaction=True)),
        (2, call(print)),
        (2, call(loader, (1,), {"x": 3})),
    ]:
        with pytest.raises(FlowMismatch, match=f"step {index}"):
            drive(flow(), [*steps[:index], (wrong, None), *steps[index + 1 :]])


def test_same_takes_the_first_value_then_insists_on_it_and_like_checks_its_shape() -> None:
    def flow(second: str) -> Flow[None]:
        yield command("SET", "lease", "abc123")
        yield command("DEL", "lease", second)

    token = Same("token", Like("[a-z0-9]{6}"))
    drive(flow("abc123"), [(cmd("SET", "lease", token), 1), (cmd("DEL", "lease", token), 1)])
    assert token.value == "abc123"
    other = Same("token")
    with pytest.raises(FlowMismatch, match="step 1"):
        drive(flow("zzz"), [(cmd("SET", "lease", other), 1), (cmd("DEL", "lease", other), 1)])
    with pytest.raises(FlowMismatch, match="step 0"):
        drive(flow("x"), [(cmd("SET", "lease", Same("t", Like("[0-9]+"))), 1)])


def test_an_exception_reply_is_thrown_into_the_flow_and_do_runs_at_its_step() -> None:
    order: list[str] = []

    def tolerant() -> Flow[str]:
        try:
            yield command("GET", "k")
        except BackendTimeout:
            order.append("caught")
        return str((yield command("GET", "again")))

    driven = drive(
        tolerant(),
        [(cmd("GET", "k"), BackendTimeout()), (cmd("GET", "again"), Do(lambda: "computed"))],
    )
    assert (driven.result, order) == ("computed", ["caught"])
    with pytest.raises(BackendTimeout):
        drive(counter("k"), [(cmd("INCR", "k"), BackendTimeout())])
    # Raised before the last step, it is a flow that gave up early: a mismatch.
    with pytest.raises(FlowMismatch, match=r"(?s)raised BackendTimeout.*after 1 steps.*PTTL"):
        drive(counter("k"), [(cmd("INCR", "k"), BackendTimeout()), (cmd("PTTL", "k"), 1)])


def test_the_flow_is_closed_when_a_mismatch_stops_it() -> None:
    cleaned: list[bool] = []

    def flow() -> Flow[None]:
        try:
            yield command("GET", "a")
            yield command("GET", "b")
        finally:
            cleaned.append(True)

    running = flow()
    with pytest.raises(FlowMismatch):
        drive(running, [(cmd("GET", "a"), None), (cmd("GET", "c"), None)])
    assert cleaned == [True]
    assert inspect.getgeneratorstate(running) == inspect.GEN_CLOSED


def test_a_malformed_step_or_a_yield_that_is_no_op_is_refused() -> None:
    with pytest.raises(TypeError, match="step 0 must be an"):
        drive(counter("k"), [cmd("INCR", "k")])  # type: ignore[list-item]

    def odd() -> Flow[None]:
        yield "GET k"  # type: ignore[misc]

    with pytest.raises(FlowMismatch, match="no operation"):
        drive(odd(), [(cmd("GET", "k"), None)])
