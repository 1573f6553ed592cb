"""The real-time governor and the latency contract as pure logic: chunk times in, decisions out.

A fake machine stands in for the engine here on purpose: it is the governor's input (seconds per
chunk per profile, a load that changes), and the engine-level tests run the real thing.
"""
from __future__ import annotations

import pytest

from engine.backends.base import QualityProfile, StreamPlan
from engine.protocol.messages import SessionSettings
from engine.session.governor import Governor, GovernorBounds, resolve_quality
from engine.session.latency_contract import SKIP_SLACK_S, LatencyContract

LADDER = ["128/4", "128/3", "128/2", "112/2", "96/2", "80/2", "64/2", "64/1"]
CHUNK_S = 1.12


def machine(fastest_s: float, ratio: float = 1.35) -> dict[str, float]:
    """Chunk seconds per profile: each rung down costs `ratio` times less than the one above."""
    return {name: fastest_s * ratio ** (len(LADDER) - 1 - i) for i, name in enumerate(LADDER)}


def measure_until_chosen(gov: Governor, truth: dict[str, float]) -> list[str]:
    measured = []
    while (name := gov.next_to_measure()) is not None:
        assert name not in measured, "measured the same profile twice"
        measured.append(name)
        gov.learn({name: truth[name]})
    return measured


def best_keeping_up(truth: dict[str, float], rtf: float = 1.1) -> str:
    return next((n for n in LADDER if CHUNK_S / truth[n] >= rtf), LADDER[-1])


@pytest.mark.parametrize("fastest_s", [0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.5])
def test_bisection_finds_the_best_profile_that_keeps_up_in_few_measurements(fastest_s):
    truth = machine(fastest_s)
    gov = Governor(LADDER, CHUNK_S)
    measured = measure_until_chosen(gov, truth)
    assert gov.start() == best_keeping_up(truth)
    assert measured[0] == LADDER[0] and len(measured) <= 5  # top, bottom, then log2 of the rest


def test_one_measurement_may_teach_a_whole_size():
    """A diffusion backend's chunk at one size tells every step count there: no need to measure them."""
    truth = machine(0.5)
    gov = Governor(LADDER, CHUNK_S)
    measured = []
    while (name := gov.next_to_measure()) is not None:
        measured.append(name)
        size = name.split("/")[0]
        gov.learn({n: t for n, t in truth.items() if n.startswith(size + "/")})
    assert gov.start() == best_keeping_up(truth)
    assert "128/3" not in measured and "64/2" not in measured


def test_too_slow_everywhere_starts_at_the_lowest_and_says_the_rate():
    gov = Governor(LADDER, CHUNK_S)
    measure_until_chosen(gov, machine(2.0))
    assert gov.start() == "64/1"
    assert gov.predicted_rtf() == pytest.approx(CHUNK_S / 2.0)


def test_fixed_quality_measures_only_its_profile_and_never_switches():
    gov = Governor(LADDER, CHUNK_S, fixed="96/2")
    assert gov.next_to_measure() == "96/2"
    gov.learn({"96/2": 5.0})
    assert gov.next_to_measure() is None and gov.start() == "96/2"
    assert all(gov.observe(5.0) is None for _ in range(20))
    assert gov.profile == "96/2" and gov.measured_rtf == pytest.approx(CHUNK_S / 5.0)


def run(gov: Governor, truth: dict[str, float], chunks: int, load: float = 1.0) -> list:
    switches = []
    for _ in range(chunks):
        switch = gov.observe(truth[gov.profile] * load)
        if switch is not None:
            switches.append(switch)
    return switches


def test_steps_down_when_the_machine_gets_busier_and_back_up_when_it_calms():
    truth = machine(0.25)
    gov = Governor(LADDER, CHUNK_S)
    gov.learn(truth)
    start = gov.start()
    assert CHUNK_S / truth[start] >= 1.3  # so that the way back up (1.3x margin) leads there again
    assert run(gov, truth, 10) == []  # steady: no switch
    busy = run(gov, truth, 10, load=2.5)
    assert busy and busy[0].direction == "down" and busy[0].previous == start
    assert CHUNK_S / (truth[gov.profile] * 2.5) >= 1.0  # keeps up again under that load
    assert LADDER.index(gov.profile) > LADDER.index(start)
    calm = run(gov, truth, 60)
    assert calm and all(s.direction == "up" for s in calm)
    assert gov.profile == start  # back where it was, and not above


def test_an_optimistic_prediction_cannot_make_it_oscillate():
    """The profile above is predicted fast but is really slow: each undone step up doubles the wait."""
    truth = machine(0.3)
    gov = Governor(LADDER, CHUNK_S, bounds=GovernorBounds(up_wait_chunks=4))
    gov.learn(truth)
    start = gov.start()
    above = LADDER[LADDER.index(start) - 1]
    gov.learn({above: truth[above] / 3})  # a warm-up under lighter load, say
    real = dict(truth)
    switches = run(gov, real, 200)
    ups = [s for s in switches if s.direction == "up"]
    assert 1 <= len(ups) <= 5, [(s.direction, s.profile) for s in switches]  # 4, 8, 16, 32, 64 ... chunks apart


def test_a_profile_reached_without_a_measurement_is_measured_by_running():
    gov = Governor(LADDER, CHUNK_S)
    gov.learn({"128/4": 0.5})  # only the top is known, and it kept up when measured
    assert gov.start() == "128/4"
    busy = {name: 3.0 * 0.8 ** i for i, name in enumerate(LADDER)}
    first = run(gov, busy, 2)
    assert [s.profile for s in first] == ["128/3"]  # one step into the unknown ...
    assert [s.profile for s in run(gov, busy, 2)] == ["128/2"]  # ... judged by what it costs there


def test_latency_contract_default_target_and_refusals():
    contract = LatencyContract.for_session(SessionSettings(), CHUNK_S)
    assert contract.target_latency_s == pytest.approx(CHUNK_S + 0.5)
    with pytest.raises(ValueError, match="below one chunk of audio"):
        LatencyContract.for_session(SessionSettings(target_latency_s=0.5), CHUNK_S)
    assert LatencyContract.for_session(SessionSettings(target_latency_s=CHUNK_S), CHUNK_S).target_latency_s == CHUNK_S


def test_skip_rule_jumps_to_the_newest_chunk_only_when_audio_waited_too_long():
    contract = LatencyContract(CHUNK_S, CHUNK_S + 0.5)
    fast, slow = 0.1, 3.0
    allowed_fast = contract.allowed_age_s(fast)
    assert allowed_fast == pytest.approx(CHUNK_S + 0.5 - fast)  # the target rules
    assert contract.allowed_age_s(slow) == pytest.approx(CHUNK_S + SKIP_SLACK_S)  # the slack rules
    assert contract.chunk_start(10, 40, allowed_fast - 0.01, fast) == 10  # waited little: no skip
    assert contract.chunk_start(10, 40, allowed_fast + 0.01, fast) == 40  # too long: newest whole chunk
    assert contract.chunk_start(10, 10, 99.0, fast) == 10  # nothing newer to jump to


def test_quality_resolution():
    plan = StreamPlan(28, tuple(QualityProfile(n, 1, 1, 1) for n in LADDER))
    assert resolve_quality(SessionSettings(mode="live"), plan).auto
    file = resolve_quality(SessionSettings(mode="file"), plan)
    assert not file.auto and file.fixed == "128/4"
    assert resolve_quality(SessionSettings(mode="file", quality="auto"), plan).fixed == "128/4"
    assert resolve_quality(SessionSettings(quality="96/2"), plan).fixed == "96/2"
    with pytest.raises(ValueError, match="unknown quality 'ultra'.*128/4, 128/3"):
        resolve_quality(SessionSettings(quality="ultra"), plan)
