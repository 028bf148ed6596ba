"""Data parallelism over batch rows (minippo.parallel) and the models that use it."""
import threading
import time

import numpy as np
import pytest

from minippo import parallel
from minippo.nn import GPT, AdamW, GPTConfig, cross_entropy


@pytest.fixture
def threads():
    """Set the thread count for one test and restore it afterwards."""
    previous = parallel.get_num_threads()
    yield parallel.set_num_threads
    parallel.set_num_threads(previous)


def test_row_shards_cover_the_rows_once(threads):
    threads(3)
    assert parallel.row_shards(7) == [slice(0, 2), slice(2, 4), slice(4, 7)]
    assert parallel.row_shards(2) == [slice(0, 1), slice(1, 2)]  # never an empty shard
    threads(1)
    assert parallel.row_shards(7) == [slice(0, 7)]


def test_balanced_shards_split_work_evenly(threads):
    threads(2)
    unit = parallel.MIN_PARALLEL_SIZE // 10
    sizes = {"a": 10 * unit, "b": 6 * unit, "c": 4 * unit, "d": unit}
    shards = parallel.balanced_shards(sizes)
    assert sorted(sum(shards, [])) == ["a", "b", "c", "d"]
    assert sorted(sum(sizes[key] for key in shard) for shard in shards) == [10 * unit, 11 * unit]


def test_balanced_shards_keep_small_work_in_one_thread(threads):
    threads(2)
    assert parallel.balanced_shards({"a": 10, "b": 6}) == [["a", "b"]]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_set_num_threads_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="count must be a positive integer"):
        parallel.set_num_threads(bad)


def test_map_shards_runs_every_shard_in_its_own_thread(threads):
    threads(2)
    seen = []
    both_running = threading.Barrier(2, timeout=10)

    def work(index, rows):
        seen.append(threading.get_ident())
        both_running.wait()  # fails unless the two shards run at the same time
        return index, rows

    shards = parallel.row_shards(4)
    assert parallel.map_shards(work, shards) == [(0, slice(0, 2)), (1, slice(2, 4))]
    assert len(set(seen)) == 2


def test_map_shards_raises_a_shard_error_after_all_shards_finish(threads):
    threads(2)
    finished = []

    def work(index, rows):
        if index == 1:
            raise KeyError("shard 1 failed")
        finished.append(index)

    with pytest.raises(KeyError, match="shard 1 failed"):
        parallel.map_shards(work, parallel.row_shards(2))
    assert finished == [0]


def test_nested_map_shards_run_serially(threads):
    threads(2)

    def inner(index, rows):
        return threading.get_ident()

    def outer(index, rows):
        return set(parallel.map_shards(inner, parallel.row_shards(2))) == {threading.get_ident()}

    assert parallel.map_shards(outer, parallel.row_shards(2)) == [True, True]


def test_a_shard_the_busy_pool_has_not_started_runs_in_the_caller(threads):
    """Another caller's shard holds the only pool thread; this caller runs its own shard 1 itself."""
    threads(2)
    pool_busy, release = threading.Event(), threading.Event()
    blocked_on = []

    def blocking(index, rows):
        if index == 0:
            pool_busy.wait(10)  # so that the pool thread, not this caller, takes shard 1
        else:
            blocked_on.append(threading.current_thread().name)
            pool_busy.set()
            release.wait(10)
        return index

    other_caller = threading.Thread(target=parallel.map_shards, args=(blocking, [0, 1]))
    other_caller.start()
    try:
        assert pool_busy.wait(10)
        assert blocked_on[0].startswith("minippo")  # the pool's only thread is held
        idents = parallel.map_shards(lambda index, rows: threading.get_ident(), [0, 1])
        assert idents == [threading.get_ident()] * 2
    finally:
        release.set()
        other_caller.join(10)


def test_a_thread_started_inside_a_shard_can_map_shards(threads):
    """Shard 1 occupies the only pool thread and waits for a thread that maps shards: no deadlock."""
    threads(2)
    results = {}

    def inner(index, rows):
        return index * 10

    def outer(index, rows):
        if index == 1:
            helper = threading.Thread(target=lambda: results.update(inner=parallel.map_shards(inner, [0, 1])))
            helper.start()
            helper.join(10)
            results["helper finished"] = not helper.is_alive()
        return index

    assert parallel.map_shards(outer, [0, 1]) == [0, 1]
    assert results == {"inner": [0, 10], "helper finished": True}


def test_map_shards_of_no_shards_is_empty():
    assert parallel.map_shards(lambda index, rows: index, []) == []


def test_map_shards_runs_serially_when_one_thread_is_allowed(threads):
    """Shards made for 2 threads (a forward pass) and run after the count became 1 (its backward)."""
    threads(2)
    shards = parallel.row_shards(4)
    threads(1)
    seen = []

    def work(index, rows):
        seen.append(threading.get_ident())
        return index, rows

    assert parallel.map_shards(work, shards) == [(0, slice(0, 2)), (1, slice(2, 4))]
    assert seen == [threading.get_ident()] * 2


def test_set_num_threads_inside_a_shard(threads):
    threads(2)

    def work(index, rows):
        if index == 1:
            parallel.set_num_threads(2)
        return index * 10

    assert parallel.map_shards(work, [0, 1]) == [0, 10]
    idents = parallel.map_shards(lambda index, rows: threading.get_ident(), [0, 1])
    assert len(set(idents)) == 2  # still sharded, on a working pool


def test_set_num_threads_while_another_thread_maps_shards(threads):
    threads(2)
    errors, results = [], []
    stop = threading.Event()

    def user():
        while not stop.is_set():
            try:
                results.append(parallel.map_shards(lambda index, rows: rows * 2, [1, 2, 3]))
            except Exception as error:  # reported by the assertion below
                errors.append(repr(error))

    thread = threading.Thread(target=user)
    thread.start()
    deadline = time.monotonic() + 0.5
    count = 2
    while time.monotonic() < deadline:
        count = 5 - count  # 2, 3, 2, ...
        parallel.set_num_threads(count)
    stop.set()
    thread.join()
    assert errors == []
    assert results and all(result == [2, 4, 6] for result in results)
    threads(2)
    idents = parallel.map_shards(lambda index, rows: threading.get_ident(), [0, 1])
    assert len(set(idents)) == 2


def train_step(model, idx, targets, mask):
    model.zero_grad()
    logits = model.forward(idx, attention_mask=mask)
    loss, dlogits = cross_entropy(logits, targets)
    model.backward(dlogits, dhidden=np.ones_like(model.hidden))  # a head's gradient too
    return loss, logits, {name: g.copy() for name, g in model.grads.items()}


@pytest.mark.parametrize("count", [2, 3])
def test_gpt_shards_give_the_single_thread_numbers(threads, count):
    """Forward, loss and every gradient agree whether the batch runs as 1, 2 or 3 shards."""
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8, dtype=np.float64)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 13, size=(5, 8))
    targets = rng.integers(0, 13, size=(5, 8))
    mask = np.ones((5, 8), dtype=int)
    mask[1, :3] = 0  # left padding in one row
    targets[mask == 0] = -1
    threads(1)
    expected = train_step(GPT(config, seed=1), idx, targets, mask)
    threads(count)
    model = GPT(config, seed=1)
    train_step(model, idx, targets, mask)  # grads accumulate across calls ...
    loss, logits, grads = train_step(model, idx, targets, mask)  # ... and zero_grad resets them
    assert loss == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(logits, expected[1], rtol=1e-12, atol=1e-12)
    for name, gradient in grads.items():
        np.testing.assert_allclose(gradient, expected[2][name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("slow", ["caller", "pool"])
def test_shard_gradients_add_up_in_one_order_whichever_shard_finishes_a_block_first(threads, slow):
    """Each block's scratch of shard 1 is added when both shards are done with the block, by whichever
    finishes last; the sums are bit for bit those of a run without the race (float32, accumulating)."""
    threads(2)
    config = GPTConfig(vocab_size=11, block_size=6, n_layer=3, n_head=2, n_embd=8)
    idx = np.random.default_rng(0).integers(0, 11, size=(4, 6))
    results = []
    for delay in (0.0, 0.02):
        model = GPT(config, seed=3)
        block_backward = model.block_backward

        def delayed(*args, delay=delay):  # one shard (the calling thread's or the pool's) lags
            if (threading.current_thread() is threading.main_thread()) == (slow == "caller"):
                time.sleep(delay)
            return block_backward(*args)

        model.block_backward = delayed
        for _ in range(2):  # the second backward adds onto the first
            model.backward(cross_entropy(model.forward(idx), idx)[1])
        results.append({name: g.copy() for name, g in model.grads.items()})
    for name, gradient in results[0].items():
        np.testing.assert_array_equal(gradient, results[1][name], err_msg=name)


def test_sharded_float32_training_is_reproducible_and_stays_float32(threads):
    threads(2)
    config = GPTConfig(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=8)
    idx = np.random.default_rng(0).integers(0, 11, size=(4, 6))
    runs = []
    for _ in range(2):
        model = GPT(config, seed=3)
        optimizer = AdamW(model.params, model.grads, lr=1e-2, weight_decay=0.1)
        for _ in range(3):
            model.zero_grad()
            loss, dlogits = cross_entropy(model.forward(idx), idx)
            assert dlogits.dtype == np.float32
            model.backward(dlogits)
            optimizer.step()
        runs.append(model.state_dict())
    for name, value in runs[0].items():
        assert value.dtype == np.float32 and model.grads[name].dtype == np.float32
        np.testing.assert_array_equal(value, runs[1][name])


def _forward_in_child(queue):
    config = GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4)
    queue.put(GPT(config, seed=0).forward(np.zeros((2, 4), dtype=int)).shape)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_gets_a_working_pool(threads):
    import multiprocessing

    threads(2)
    GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0).forward(
        np.zeros((2, 4), dtype=int))  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == (2, 4, 7)
