"""The recurrences the ReNet sweeps and conv-RNNs run, and their implementations.

- `recurrence`: the gated cells (RNN, GRU, LSTM) over a whole sequence and the one
  dispatch among their implementations (`recurrence.recurrence`, whose docstring has
  the table of what runs on which platform): `lax.scan` with a hand-written backward
  (custom_vjp), `lax.scan` differentiated by JAX, or the Pallas kernels;
- `pallas_recurrence`, `pallas_plan` and `pallas_sm90.json`: the fused GPU kernels and
  their layouts, chosen from real sm_90 compilations (made offline by
  `experiments/kernel_report.py`);
- `linear_scan`: the parallel cells' elementwise recurrence h_t = a_t h_{t-1} + b_t
  (associative or sequential scan);
- `common`: what they all share (gate counts, precisions, the lowering platform).
"""
