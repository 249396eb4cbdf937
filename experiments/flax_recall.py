"""A Flax model with a DNC layer learns copy or associative recall (an example of
`dncjax.flax`): Dense in, `nn.RNN(CoreCell)` (the paper's DNC), Dense head; optax Adam;
orbax checkpoints in --workdir (--resume goes on from the latest). Prints progress lines
and, at the end, the bit errors per sequence on fresh sequences.

  python experiments/flax_recall.py --help
"""

import argparse
import pathlib
import time


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--task", default="copy", choices=["copy", "associative_recall"])
  p.add_argument("--steps", type=int, default=2000, help="training steps")
  p.add_argument("--workdir", required=True, help="folder for the orbax checkpoints")
  p.add_argument("--resume", action="store_true", help="go on from the latest checkpoint")
  p.add_argument("--bits", type=int, default=4, help="bits per vector")
  p.add_argument("--max-length", type=int, default=5, help="longest sequence (items)")
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--hidden", type=int, default=32, help="H, controller units")
  p.add_argument("--memory-size", type=int, default=16, help="N, memory slots")
  p.add_argument("--word-size", type=int, default=8, help="W, numbers per slot")
  p.add_argument("--read-heads", type=int, default=1, help="R, read heads")
  p.add_argument("--learning-rate", type=float, default=3e-3)
  p.add_argument("--report-every", type=int, default=100)
  p.add_argument("--checkpoint-every", type=int, default=500)
  p.add_argument("--seed", type=int, default=0)
  return p


def build(args):
  """(the task's config, the Flax model, the optax optimiser)."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from dncjax.flax import linen  # pylint: disable=import-outside-toplevel
  from dncjax.tasks import generators  # pylint: disable=import-outside-toplevel

  min_length = 2 if args.task == "associative_recall" else 1
  task = generators.TaskConfig(args.task, bits=args.bits, min_length=min_length,
                               max_length=args.max_length, item_length=2)
  cell = linen.cell("dnc", args.hidden, args.hidden, hidden=args.hidden,
                    memory_size=args.memory_size, word_size=args.word_size,
                    read_heads=args.read_heads)

  class Recall(nn.Module):
    """x [B, T, I] -> Dense -> nn.RNN(DNC cell) -> Dense -> logits [B, T, O]."""

    @nn.compact
    def __call__(self, xs):
      return nn.Dense(task.output_size)(nn.RNN(cell)(nn.Dense(args.hidden)(xs)))

  optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(args.learning_rate))
  return task, Recall(), optimizer


def checkpoints(workdir):
  """The orbax CheckpointManager of `workdir`/checkpoints."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
  return ocp.CheckpointManager(pathlib.Path(workdir).resolve() / "checkpoints", options=options)


def restore(workdir, template):
  """(the latest saved {'params', 'opt_state'} shaped as `template`, its step)."""
  import jax  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  manager = checkpoints(workdir)
  step = manager.latest_step()
  if step is None:
    raise SystemExit(f"error: no checkpoint in {workdir}")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract)), step


def main(argv=None):
  """Trains, checkpoints and reports; returns the final bit errors per sequence."""
  args = parser().parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from dncjax.tasks import generators, metrics  # pylint: disable=import-outside-toplevel
  from dncjax.training import compile_cache  # pylint: disable=import-outside-toplevel

  compile_cache.enable()  # a second run of the same settings loads its compiled programs
  task, model, optimizer = build(args)
  rng = np.random.default_rng(args.seed)
  params = model.init(jax.random.key(args.seed), np.zeros((1, task.time_steps, task.input_size)))
  state, start = {"params": params, "opt_state": optimizer.init(params)}, 0
  if args.resume:
    state, start = restore(args.workdir, state)
    print(f"resumed from step {start}")

  def loss_fn(params, seqs):
    logits = model.apply(params, seqs.inputs)
    xent = optax.sigmoid_binary_cross_entropy(logits, seqs.targets).sum(-1)
    return (xent * seqs.mask).sum() / seqs.inputs.shape[0], logits

  @jax.jit
  def train_step(state, seqs):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], seqs)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}
    return new, loss, metrics.bit_errors(logits, (seqs.targets, seqs.mask))

  manager, began, window = checkpoints(args.workdir), time.time(), []
  for step in range(start + 1, args.steps + 1):
    state, loss, errors = train_step(state, generators.sample(task, rng, args.batch_size))
    window.append((loss, errors))
    if step % args.report_every == 0 or step == args.steps:
      loss, errors = np.mean(np.asarray(window), axis=0)  # means since the last line
      print(f"step {step}: loss {loss:.4f} bit errors {errors:.3f} "
            f"({time.time() - began:.1f} s)", flush=True)
      window = []
    if step % args.checkpoint_every == 0 or step == args.steps:
      manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  test = generators.sample(task, np.random.default_rng(10_000 + args.seed), 256)
  logits = jax.jit(model.apply)(state["params"], test.inputs)
  final = float(metrics.bit_errors(logits, (test.targets, test.mask)))
  print(f"final bit errors per sequence: {final:.4f} (256 fresh sequences, step {args.steps})")
  return final


if __name__ == "__main__":
  main()
