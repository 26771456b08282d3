"""The early-stopping benchmark (`python -m benchmarks.multifidelity`): epochs-to-target.

The quality benchmark counts trials, which hides what early stopping buys: a stopped trial costs a
few epochs, not a full training. Here every method pays in epochs, one worker, sequentially, until
a trial *trained to the maximum fidelity* reaches the task's target. Modules:

- `tasks`: multi-fidelity tasks (LCBench curves from the YAHPO surrogate, NAS-Bench-201 at 12 and
  200 epochs), their target and top-5 % threshold;
- `ledger`: the epoch accounting (what a stopped trial, a full trial and a restart cost) and the
  target detection, shared by every method so they are charged alike;
- `methods` (+ `mf_smac`, `mf_dehb`, `dehb_worker`): the method drivers;
- `run`: one cached run; `report`: the tables; `__main__`: the command.
"""
