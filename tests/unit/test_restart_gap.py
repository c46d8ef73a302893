"""The restart benchmark's reading of its probe records: which connection closed the
gap, and which ones got through before every flow was back."""
from benchmarks.restart import Gap, early_successes, first_success

KILL = 100.0
RECORDS = [(99.0, 99.01, True),     # before the kill: not part of the gap
           (100.5, 101.0, False),   # dropped while OVS was down
           (103.0, 103.02, True),   # while 40 of 50 flows were seen: forwarded early
           (104.0, 104.01, True)]   # after every flow was back


def gap() -> Gap:
    g = Gap(kill=KILL, expected_flows=50)
    g.counts = [(1.0, 0), (2.5, 40), (3.5, 50)]
    g.mark("flows back", KILL + 3.5)
    return g


def test_first_success_is_the_first_connection_started_after_the_kill():
    assert first_success(RECORDS, KILL) == 103.02
    assert first_success(RECORDS[:2], KILL) is None


def test_early_successes_carry_the_flow_count_seen_before_them():
    early = early_successes(RECORDS, gap())
    assert [(round(t, 2), n) for t, n in early] == [(3.02, 40)]


def test_flows_seen_is_zero_before_the_first_read():
    assert gap().flows_seen(0.5) == 0
    assert gap().flows_seen(3.0) == 40


def test_a_mark_keeps_its_first_time():
    g = gap()
    g.mark("flows back", KILL + 9.0)
    assert g.marks["flows back"] == 3.5
