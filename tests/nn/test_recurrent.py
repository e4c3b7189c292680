"""The sequence modules: the scan path (what export sees) equals a plain Python loop over the cell."""

import pytest
import torch

from lndeploy.nn import LayerNorm, LNElmanCell, LNGRUCell, LNLSTMCell, Recurrent

CELLS = {"elman": LNElmanCell, "lstm": LNLSTMCell, "gru": LNGRUCell}


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_scan_equals_python_loop(kind):
    torch.manual_seed(0)
    module = Recurrent(CELLS[kind](5, 12)).eval()
    x = torch.randn(3, 9, 5)
    with torch.no_grad():
        state = module.cell.initial_state(x)
        loop_out, loop_state = module.forward_loop(x, state)
        scan_out, scan_state = module.forward_scan(x, state)
    assert loop_out.shape == (3, 9, 12)
    torch.testing.assert_close(scan_out, loop_out, rtol=0, atol=1e-6)
    scan_leaves, loop_leaves = torch.utils._pytree.tree_leaves(scan_state), torch.utils._pytree.tree_leaves(loop_state)
    assert len(scan_leaves) == len(loop_leaves) == (2 if kind == "lstm" else 1)
    for a, b in zip(scan_leaves, loop_leaves):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_elman_cell_is_tanh_of_layernormed_preactivation():
    torch.manual_seed(0)
    cell = LNElmanCell(4, 6).eval()
    x, h = torch.randn(2, 4), torch.randn(2, 6)
    a = h @ cell.w_hh.weight.T + x @ cell.w_xh.weight.T
    mu, var = a.mean(-1, keepdim=True), a.var(-1, unbiased=False, keepdim=True)
    expected = torch.tanh(cell.ln.weight * (a - mu) / torch.sqrt(var + cell.ln.eps) + cell.ln.bias)
    out, new_h = cell(x, h)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert new_h is out


def test_layernorm_over_chw_uses_biased_variance_per_sample():
    torch.manual_seed(0)
    ln = LayerNorm((3, 4, 5))
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 4, 5) * 4 + 1
    flat = x.reshape(2, -1)
    mu, var = flat.mean(1).view(2, 1, 1, 1), flat.var(1, unbiased=False).view(2, 1, 1, 1)
    expected = ln.weight * (x - mu) / torch.sqrt(var + ln.eps) + ln.bias
    torch.testing.assert_close(ln(x), expected, rtol=0, atol=1e-5)
