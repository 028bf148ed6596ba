"""The decode step's products with the weights' columns split across threads (in panels of rows) and
its attention with the heads split across threads equal the plain computations, for any thread count,
and keep the dtype."""
from types import SimpleNamespace

import numpy as np
import pytest

from minippo.blas import blas_threads, get_blas_threads
from minippo.nn import generation
from minippo.nn.attention import attention_bias, attention_decode
from minippo.nn.generation import (
    FEW_ROWS,
    LARGE_WEIGHT,
    attention_by_heads,
    decode_linear,
    decode_lm_head,
    decode_threads,
    linear_by_columns,
    lm_head_by_rows,
    panels_pay_off,
    step_in_panels,
)
from minippo.parallel import MIN_PARALLEL_SIZE, get_num_threads, set_num_threads


@pytest.fixture(params=[1, 2, 3])
def threads(request):
    saved = get_num_threads()
    set_num_threads(request.param)
    yield request.param
    set_num_threads(saved)


@pytest.mark.parametrize("panel", [10 ** 6, 50])  # one product per thread, or many panels (summed)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 5, 300])  # 300: blocks of 4 vocabulary rows (SMALL_OUTPUT)
def test_column_split_products_equal_the_plain_ones(threads, dtype, rows, panel):
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((rows, 12)).astype(dtype)
    weight, bias = rng.standard_normal((12, 37)).astype(dtype), rng.standard_normal(37).astype(dtype)
    wte = rng.standard_normal((41, 12)).astype(dtype)
    y, logits = linear_by_columns(x, weight, bias, panel), lm_head_by_rows(wte, x, panel)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == logits.dtype == dtype and y.flags.c_contiguous and logits.flags.c_contiguous
    np.testing.assert_allclose(y, x @ weight + bias, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(logits, x @ wte.T, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("padded", [False, True])
def test_attention_split_by_heads_equals_one_call(threads, padded):
    rng = np.random.default_rng(threads)
    B, nh, T, hs = 2, 5, MIN_PARALLEL_SIZE // 2 // 5 // 64 + 1, 64  # a cache just above the threshold
    q = rng.standard_normal((B, nh, hs)).astype(np.float32)
    keys, values = (rng.standard_normal((B, nh, T, hs)).astype(np.float32) for _ in range(2))
    mask = np.ones((B, T), dtype=np.int64)
    if padded:
        mask[1, :3] = 0
    bias = attention_bias(np.array([T - 1]), T, mask, np.float32) if padded else None
    assert keys.size >= MIN_PARALLEL_SIZE
    y = attention_by_heads(q, keys, values, bias, pool_awake=True)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, attention_decode(q, keys, values, bias))  # the same arithmetic per head
    small = attention_by_heads(q, keys[:, :, :4], values[:, :, :4], None if bias is None else bias[..., :4])
    np.testing.assert_array_equal(small, attention_decode(q, keys[:, :, :4], values[:, :, :4],
                                                          None if bias is None else bias[..., :4]))


@pytest.mark.parametrize("pool_awake", [False, True])
def test_attention_splits_a_mid_sized_cache_only_while_the_pool_is_awake(pool_awake, monkeypatch):
    B, nh, T, hs = 2, 4, MIN_PARALLEL_SIZE // 2 // 4 // 64 + 1, 64  # MIN_PARALLEL_SIZE <= keys < COLD_POOL_SIZE
    q, keys, values = np.zeros((B, nh, hs)), np.zeros((B, nh, T, hs)), np.zeros((B, nh, T, hs))
    assert MIN_PARALLEL_SIZE <= keys.size < generation.COLD_POOL_SIZE
    splits = []
    monkeypatch.setattr(generation, "map_shards", lambda function, shards: splits.append(shards) or
                        [function(index, shard) for index, shard in enumerate(shards)])
    attention_by_heads(q, keys, values, None, pool_awake)
    assert bool(splits) == pool_awake


@pytest.mark.parametrize("rows", [1, FEW_ROWS, FEW_ROWS + 1])
@pytest.mark.parametrize("large", [False, True])
def test_decode_products_take_panels_only_for_few_rows_of_a_large_weight(rows, large):
    rng = np.random.default_rng(rows)
    shape = (LARGE_WEIGHT // 1024, 1024) if large else (64, 64)  # LARGE_WEIGHT elements, or few
    x, weight = rng.standard_normal((rows, shape[0])), rng.standard_normal(shape)
    bias = rng.standard_normal(shape[1])
    assert panels_pay_off(rows, weight) == (large and 1 < rows <= FEW_ROWS) and weight.size <= LARGE_WEIGHT
    panels = panels_pay_off(rows, weight)
    np.testing.assert_allclose(decode_linear(x, weight, bias, panels), x @ weight + bias, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(decode_lm_head(weight.T, x, panels), x @ weight, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows", [1, FEW_ROWS, FEW_ROWS + 1])
def test_a_decode_loop_in_panels_holds_blas_at_one_thread(rows):
    if get_blas_threads() is None:
        pytest.skip("no OpenBLAS loaded")
    wte = np.zeros((LARGE_WEIGHT // 64, 64), dtype=np.float32)
    with blas_threads(3):
        with decode_threads(panels_pay_off(rows, wte)):
            inside = get_blas_threads()
        assert get_blas_threads() == 3
    assert inside == (1 if panels_pay_off(rows, wte) else 3) and panels_pay_off(FEW_ROWS, wte)


@pytest.mark.parametrize("projection", [(64, 64), (LARGE_WEIGHT // 512, 512)])
def test_a_decode_step_runs_in_panels_all_or_none_by_its_smallest_weight(projection):
    # the LM head alone is large in the first case (config M's shape): no panels at all then
    model = SimpleNamespace(params={"transformer.h.0.attn.c_proj.weight": np.empty(projection),
                                    "transformer.wte.weight": np.empty((LARGE_WEIGHT // 64, 64))})
    large = projection[0] * projection[1] >= LARGE_WEIGHT
    assert step_in_panels(FEW_ROWS, model) == large
    assert not step_in_panels(1, model) and not step_in_panels(FEW_ROWS + 1, model)
