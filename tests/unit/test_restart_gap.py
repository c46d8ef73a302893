"""The restart benchmark's reading of its probe records: which connection closed the
gap, and which ones got through while flows certainly were missing."""
from benchmarks.restart import Gap, early_successes, first_success

KILL = 100.0
RECORDS = [(99.0, 99.01, True),     # before the kill: not part of the gap
           (100.5, 101.0, False),   # dropped while OVS was down
           (103.0, 103.02, True),   # two flows landed after it: forwarded early
           (104.0, 104.01, True)]   # after every flow had landed


def gap() -> Gap:
    return Gap(kill=KILL, expected_flows=4, landed=[1.0, 2.5, 3.5, 3.6])


def test_first_success_is_the_first_connection_started_after_the_kill():
    assert first_success(RECORDS, KILL) == 103.02
    assert first_success(RECORDS[:2], KILL) is None


def test_early_successes_count_the_flows_that_landed_after_them():
    early = early_successes(RECORDS, gap())
    assert [(round(t, 2), n) for t, n in early] == [(3.02, 2)]


def test_no_early_success_once_every_flow_landed_before():
    g = gap()
    g.landed = [1.0, 2.0]
    assert early_successes(RECORDS, g) == []
    assert g.last_landed() == 2.0


def test_a_mark_keeps_its_first_time():
    g = gap()
    g.mark("flow count back", KILL + 3.5)
    g.mark("flow count back", KILL + 9.0)
    assert g.marks["flow count back"] == 3.5
