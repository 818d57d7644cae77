"""Bounded queues: live sources drop the oldest frame and count it; file sources block."""

from __future__ import annotations

import threading
import time

import pytest

from agent.sources.queue import BlockingQueue, DropOldestQueue


def test_drop_oldest_keeps_the_newest_and_counts_drops() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(3)
    dropped = [queue.put(i) for i in range(10)]
    assert dropped == [0, 0, 0] + [1] * 7
    assert queue.drops == 7
    assert len(queue) == 3
    assert [queue.get(0) for _ in range(4)] == [7, 8, 9, None]


def test_get_times_out_empty() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(2)
    started = time.monotonic()
    assert queue.get(0.2) is None
    assert 0.15 <= time.monotonic() - started < 1.0


def test_close_wakes_a_waiting_reader_at_once_and_keeps_queued_items() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(2)
    queue.put(1)
    queue.close()
    assert queue.put(2) == 0  # refused
    assert queue.get(5.0) == 1
    started = time.monotonic()
    assert queue.get(5.0) is None
    assert time.monotonic() - started < 0.5


def test_blocking_put_waits_for_room() -> None:
    queue: BlockingQueue[int] = BlockingQueue(1)
    stop = threading.Event()
    assert queue.put(1, stop)
    finished = threading.Event()

    def produce() -> None:
        queue.put(2, stop)
        finished.set()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    assert not finished.wait(0.3)  # the producer is blocked: the queue is full
    assert queue.get(1.0) == 1
    assert finished.wait(2.0)
    assert queue.get(1.0) == 2
    thread.join(1.0)


@pytest.mark.parametrize("how", ["stop", "close"])
def test_blocked_producer_gives_up_on_stop_or_close(how: str) -> None:
    queue: BlockingQueue[int] = BlockingQueue(1)
    stop = threading.Event()
    queue.put(1, stop)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(queue.put(2, stop, poll_s=0.05)), daemon=True)
    thread.start()
    time.sleep(0.1)
    if how == "stop":
        stop.set()
    else:
        queue.close()
    thread.join(1.0)
    assert result == [False]
    assert len(queue) == 1


def test_zero_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DropOldestQueue(0)
