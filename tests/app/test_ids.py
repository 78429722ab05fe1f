"""Run ids are ULIDs: 26 characters of Crockford's base32 that sort by creation time."""

from __future__ import annotations

import time

from app.ids import new_run_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(ulid: str) -> int:
    value = 0
    for char in ulid:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_an_id_carries_its_creation_millisecond_and_80_random_bits() -> None:
    before = time.time_ns() // 1_000_000
    ulid = new_run_id()
    after = time.time_ns() // 1_000_000
    assert len(ulid) == 26
    assert set(ulid) <= set(CROCKFORD)
    assert before <= decode(ulid) >> 80 <= after


def test_ids_of_later_runs_sort_after_and_never_repeat() -> None:
    first = new_run_id()
    ids = {new_run_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    later_ms = (decode(first) >> 80) + 1
    while time.time_ns() // 1_000_000 < later_ms:  # the next millisecond, by the clock
        pass
    assert first < new_run_id()
    assert len({decode(i) & (2**80 - 1) for i in ids}) == 10_000


def test_ids_made_in_one_millisecond_still_sort_in_the_order_they_were_made() -> None:
    ids = [new_run_id() for _ in range(10_000)]
    assert ids == sorted(ids)
    millis = [decode(i) >> 80 for i in ids]
    assert len(set(millis)) < len(ids)  # several in one millisecond: the case in question
