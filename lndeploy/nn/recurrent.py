"""Recurrent cells with per-step LayerNorm, and a module that runs a cell over time.

Elman:  a_t = W_hh h_{t-1} + W_xh x_t,  h_t = f(LN(a_t))
LSTM (Ba et al. 2016):  [f,i,o,g] = LN(W_x x_t) + LN(W_h h_{t-1}) + b
        c_t = sig(f) * c_{t-1} + sig(i) * tanh(g),  h_t = sig(o) * tanh(LN(c_t))
GRU (Ba et al. 2016):   [r,z] = sig(LN(W_xrz x_t) + LN(W_hrz h_{t-1}) + b_rz)
        n = tanh(LN(W_xn x_t) + r * LN(W_hn h_{t-1}) + b_n),  h_t = (1 - z) * n + z * h_{t-1}

``Recurrent`` exports as one ONNX ``Scan`` with a dynamic sequence length: under export it runs the
cell through ``torch._higher_order_ops.scan``; a Python loop would be unrolled to the example's length.
"""

from __future__ import annotations

import torch
from torch import nn

from lndeploy.nn.layernorm import LayerNorm


class LNElmanCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, activation=torch.tanh, eps: float = 1e-5):
        super().__init__()
        self.w_xh = nn.Linear(input_size, hidden_size, bias=False)
        self.w_hh = nn.Linear(hidden_size, hidden_size, bias=False)
        self.ln = LayerNorm(hidden_size, eps=eps)  # its bias is the cell's bias
        self.activation = activation
        self.hidden_size = hidden_size

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: returns (output, new state)."""
        h = self.activation(self.ln(self.w_hh(h) + self.w_xh(x)))
        return h, h


class LNLSTMCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.w_x = nn.Linear(input_size, 4 * hidden_size, bias=False)
        self.w_h = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.ln_x = LayerNorm(4 * hidden_size, eps=eps, bias=False)
        self.ln_h = LayerNorm(4 * hidden_size, eps=eps, bias=False)
        self.ln_c = LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        self.hidden_size = hidden_size

    def initial_state(self, x: torch.Tensor):
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, state):
        h, c = state
        gates = self.ln_x(self.w_x(x)) + self.ln_h(self.w_h(h)) + self.bias
        f, i, o, g = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return h, (h, c)


class LNGRUCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.w_x = nn.Linear(input_size, 3 * hidden_size, bias=False)
        self.w_h = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.ln_x = LayerNorm(3 * hidden_size, eps=eps, bias=False)
        self.ln_h = LayerNorm(3 * hidden_size, eps=eps, bias=False)
        self.bias = nn.Parameter(torch.zeros(3 * hidden_size))
        self.hidden_size = hidden_size

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor):
        hs = self.hidden_size
        gx = self.ln_x(self.w_x(x)) + self.bias
        gh = self.ln_h(self.w_h(h))
        r = torch.sigmoid(gx[..., :hs] + gh[..., :hs])
        z = torch.sigmoid(gx[..., hs : 2 * hs] + gh[..., hs : 2 * hs])
        n = torch.tanh(gx[..., 2 * hs :] + r * gh[..., 2 * hs :])
        h = (1 - z) * n + z * h
        return h, h


class Recurrent(nn.Module):
    """Runs ``cell`` over dim 1 of a (batch, seq, features) input; returns (outputs, final state)."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, state=None):
        if state is None:
            state = self.cell.initial_state(x)
        if torch.compiler.is_exporting() or torch.compiler.is_compiling():
            return self.forward_scan(x, state)
        return self.forward_loop(x, state)

    def forward_loop(self, x: torch.Tensor, state):
        outputs = []
        for t in range(x.shape[1]):
            out, state = self.cell(x[:, t], state)
            outputs.append(out)
        return torch.stack(outputs, dim=1), state

    def forward_scan(self, x: torch.Tensor, state):
        from torch._higher_order_ops import scan

        def step(carry, x_t):
            out, new = self.cell(x_t, carry)
            # scan refuses outputs that alias the carry
            return new, out.clone()

        final, outputs = scan(step, state, x, dim=1)
        return outputs, final
