"""The cores as Flax modules: `linen.CoreCell` (a `flax.linen.RNNCellBase`, for `nn.RNN`
and `nn.Bidirectional`) and `nnx.CoreModule` (an `nnx.RNNCellBase`, for `nnx.RNN`).

Both wrap a core of `dncjax.models` (its `init` and `step`, nothing re-implemented): the
params are the core's flat dict, the carry its state NamedTuple with the batch axes in
front, and a reset flag per lane restarts packed episodes inside the scan. `memory` turns
the DNC's carries over time into the arrays a memory plot draws. Import the submodules
(`dncjax.flax.linen`, `dncjax.flax.nnx`); this package imports no Flax itself.
"""
