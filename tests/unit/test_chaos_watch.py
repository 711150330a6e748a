"""The chaos run's judgement of a user's event stream: a gap passes only when the server announced it."""

from __future__ import annotations

from bench.chaos_clients import ChannelWatch


def test_events_in_order_across_a_reconnection_are_whole() -> None:
    watch = ChannelWatch()
    watch.subscribed(seq=3, recovered=True)
    watch.event(4)
    watch.event(5)
    watch.subscribed(seq=9, recovered=True)  # reconnected with since=5: the server replays 6..9
    for seq in (6, 7, 8, 9, 10):
        watch.event(seq)

    assert (watch.gaps, watch.out_of_order, watch.unrecovered, watch.last_seq) == (0, 0, 0, 10)


def test_a_gap_without_recovered_false_is_counted() -> None:
    watch = ChannelWatch()
    watch.subscribed(seq=0, recovered=True)
    watch.event(1)
    watch.event(4)

    assert watch.gaps == 2
    assert watch.problems == ["seq 4 after 1, no recovered: false"]


def test_a_gap_the_server_announced_is_not_a_loss() -> None:
    watch = ChannelWatch()
    watch.subscribed(seq=0, recovered=True)
    watch.event(1)
    watch.subscribed(seq=40, recovered=False)  # history no longer reaches back: refetch, carry on from 40
    watch.event(41)

    assert (watch.gaps, watch.unrecovered, watch.last_seq) == (0, 1, 41)


def test_a_repeated_or_older_event_is_out_of_order() -> None:
    watch = ChannelWatch()
    watch.subscribed(seq=0, recovered=True)
    for seq in (1, 2, 2, 1, 3):
        watch.event(seq)

    assert (watch.out_of_order, watch.gaps, watch.last_seq) == (2, 0, 3)


def test_a_close_is_put_down_to_the_token_of_the_connection_it_closed() -> None:
    watch = ChannelWatch()
    watch.closed("revoked-token", 4401)  # the server closed the socket of the token that was just revoked
    watch.closed("new-token", 1012)  # later, the reconnected socket lost the hub

    assert watch.closed_tokens == {"revoked-token": [4401], "new-token": [1012]}
    assert watch.close_codes == {4401: 1, 1012: 1}
