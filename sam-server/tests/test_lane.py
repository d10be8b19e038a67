import threading

from sam_server.lane import CLICK, WARMUP, EmbeddingLane

TIMEOUT = 10


def blocked_lane():
    """A lane busy with a first job until the returned event is set; the order jobs ran in."""
    order, started, release = [], threading.Event(), threading.Event()
    lane = EmbeddingLane()
    lane.submit("busy", lambda: started.set() or release.wait(TIMEOUT) and order.append("busy"))
    assert started.wait(TIMEOUT)
    return lane, order, release


def test_clicks_go_ahead_of_queued_warm_ups():
    lane, order, release = blocked_lane()
    futures = [lane.submit("warm-1", lambda: order.append("warm-1"), WARMUP),
               lane.submit("warm-2", lambda: order.append("warm-2"), WARMUP),
               lane.submit("click", lambda: order.append("click"), CLICK)]
    assert lane.depth() == (1, 2)
    release.set()
    for future in futures:
        future.result(TIMEOUT)
    assert order == ["busy", "click", "warm-1", "warm-2"]
    assert lane.depth() == (0, 0)


def test_a_second_request_for_a_queued_image_waits_for_the_same_embedding():
    lane, order, release = blocked_lane()
    first = lane.submit("image", lambda: order.append("image") or "features", WARMUP)
    second = lane.submit("image", lambda: order.append("again") or "other", CLICK)
    assert first is second
    release.set()
    assert second.result(TIMEOUT) == "features" and order == ["busy", "image"]


def test_a_click_lifts_a_queued_warm_up_of_its_image_ahead_of_the_others():
    lane, order, release = blocked_lane()
    futures = [lane.submit(key, lambda key=key: order.append(key), WARMUP) for key in ("warm-1", "warm-2", "warm-3")]
    lane.lift("warm-3", CLICK)
    assert lane.depth() == (1, 2)
    release.set()
    for future in futures:
        future.result(TIMEOUT)
    assert order == ["busy", "warm-3", "warm-1", "warm-2"]


def test_a_failing_embedding_reaches_whoever_waits_and_the_lane_goes_on():
    lane = EmbeddingLane()

    def fail():
        raise RuntimeError("out of memory")

    failed = lane.submit("bad", fail)
    assert isinstance(failed.exception(TIMEOUT), RuntimeError)
    assert lane.submit("good", lambda: "features").result(TIMEOUT) == "features"
