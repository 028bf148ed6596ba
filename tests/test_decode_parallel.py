"""The decode step's products with the weights' columns split across threads equal the plain products,
for any thread count, and keep the dtype."""
import numpy as np
import pytest

from minippo.nn.generation import linear_by_columns, lm_head_by_rows
from minippo.parallel import get_num_threads, set_num_threads


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 5])
def test_column_split_products_equal_the_plain_ones(threads, dtype, rows):
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((rows, 12)).astype(dtype)
    weight, bias = rng.standard_normal((12, 37)).astype(dtype), rng.standard_normal(37).astype(dtype)
    wte = rng.standard_normal((41, 12)).astype(dtype)
    saved = get_num_threads()
    set_num_threads(threads)
    try:
        y, logits = linear_by_columns(x, weight, bias), lm_head_by_rows(wte, x)
    finally:
        set_num_threads(saved)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == logits.dtype == dtype and y.flags.c_contiguous and logits.flags.c_contiguous
    np.testing.assert_allclose(y, x @ weight + bias, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(logits, x @ wte.T, rtol=tolerance, atol=tolerance)
