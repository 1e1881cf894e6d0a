"""Many same-shaped GANs trained as one program: the per-class GANs of the imbalance benchmark.

Each member is a GAN of one config on its own arrays (one class). Their states
are stacked on a leading axis and one `jax.vmap`ped train step advances all of
them, so a device that one small GAN leaves idle runs them together. Each member
starts from `init(PRNGKey(seed))` and reads the batches `fit_gan` would give it
(`batch_order` on its own arrays with the same seed), so it ends where its own
`fit_gan` run ends, up to the float rounding of batched convolutions.

The group trains in its own folder (checkpoints of the stacked state, so a
stopped group resumes exactly; metrics.jsonl with means over members). When it
finishes, every member's folder gets what `fit_gan` leaves there for
`load_generator`: config.json, a checkpoint at the last step, the sample grids
and final_metrics.json (the member's own last metrics).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import checkpoint
from gan_jax import fs
from gan_jax import parallel
from gan_jax import workdir as workdir_lib
from gan_jax.data import batch_order
from gan_jax.data import device_dataset
from gan_jax.train import gan_loop
from gan_jax.train import gan_step
from gan_jax.train import loop
from gan_jax.train import nonfinite

FINAL_METRICS = "final_metrics.json"
MEMBER_METRICS = "member_metrics.json"  # in the group folder: every member's last metrics


@dataclasses.dataclass(frozen=True)
class Member:
  """One GAN of the group: its training arrays and its run folder (as `fit_gan` takes them)."""
  images: np.ndarray
  labels: np.ndarray
  workdir: str


def finished_record(workdir: str, num_steps: int) -> dict[str, Any] | None:
  """The last metrics of a run folder that finished `num_steps` steps (either path), else None."""
  path = fs.join(workdir, FINAL_METRICS)
  if not fs.exists(path):
    return None
  record = fs.read_json(path)
  return record if int(record.get("step", 0)) >= num_steps else None


def fit_gans_stacked(config: ml_collections.ConfigDict, members: Sequence[Member], folder: str, *,
                     num_classes: int, seed: int, name: str) -> list[dict[str, Any]]:
  """Trains (or resumes) one GAN per member as one vmapped program until `config.num_steps`.

  Args:
    config: the training fields every member shares (`gan_loop.validate_training`); not a
      progressive GAN, whose phases change the program during the run.
    members: the GANs; their images must have one shape.
    folder: the group's run folder (stacked checkpoints, mean metrics).
    num_classes: classes of the data set.
    seed: initialisation, noise and batch order of every member (as `fit_gan`'s seed).
    name: label of the progress lines.

  Returns:
    Each member's last metrics record (as `fit_gan` returns it), in member order; a record
    with 'stopped_by' and 'stopped_at' (the group's) for every member when a signal stopped it.
  """
  if not members:
    raise ValueError("fit_gans_stacked needs at least one member")
  image_shape = tuple(members[0].images.shape[1:])
  if any(tuple(m.images.shape[1:]) != image_shape for m in members):
    raise ValueError(f"stacked GANs need one image shape, got {sorted({m.images.shape[1:] for m in members})}")
  if gan_loop.phase_schedule(config, image_shape) is not None:
    raise ValueError(f"{config.model} grows in phases; its runs train one at a time (fit_gan)")
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  is_writer = jax.process_index() == 0
  if is_writer:  # every folder is checked before training, as fit_gan checks its own
    for path in [folder] + [m.workdir for m in members]:
      workdir_lib.prepare(path, config, migrations=gan_loop.MIGRATIONS)
  arrays = [gan_loop.class_balanced(m.images, m.labels, seed) if config.class_balanced else (m.images, m.labels)
            for m in members]
  programs = gan_loop.build_programs(config, image_shape, num_classes, mesh)
  gan = programs.gan
  g_tx, d_tx = gan_loop.build_optimizers(config)
  step = gan_step.make_train_step(gan, gan_loop.build_step_config(config), g_tx, d_tx)
  stacked_step = parallel.data_parallel_jit(jax.vmap(step), mesh, batch_axis=2)
  # One device copy of every member's images; a member's rows are offset into it.
  dataset = device_dataset.DeviceDataset(np.concatenate([a[0] for a in arrays]),
                                         np.concatenate([a[1] for a in arrays]), mesh, gan.output_range)
  offsets = np.cumsum([0] + [len(a[1]) for a in arrays])[:-1]
  sizes = [len(a[1]) for a in arrays]
  k_members, d_steps = len(members), config.d_steps
  metric_names: list[str] = []
  last: dict[str, Any] = {}

  def step_fn(states, step_index):
    batch_numbers = range(step_index * d_steps, (step_index + 1) * d_steps)
    rows = np.concatenate([np.stack([batch_order.batch_indices(s, num_examples=n, batch_size=config.batch_size,
                                                               seed=seed) for s in batch_numbers]) + offset
                           for n, offset in zip(sizes, offsets)])
    batch = jax.tree.map(lambda x: x.reshape((k_members, d_steps) + x.shape[1:]), dataset.gather(rows))
    states, metrics = stacked_step(states, batch)
    metric_names[:] = metric_names or [k for k in metrics if k != "nonfinite"]
    last.update(metrics)
    return states, {k: jnp.mean(v) for k, v in metrics.items()}

  sample_z, sample_labels, rows, cols = gan_loop.fixed_sample_inputs(gan, seed)

  def save_samples(states, done):
    for k, member in enumerate(members):
      grid = programs.render_at(done)(parallel.member(states, k), sample_z, sample_labels)
      gan_loop.save_sample_grid(member.workdir, done, grid, rows, cols, gan.output_range)

  init = programs.init(jax.random.PRNGKey(seed))
  states = parallel.replicate(parallel.stack_members([init] * k_members), mesh)
  result = loop.train(
      states, step_fn, num_steps=config.num_steps, name=name, log_every=config.log_every,
      checkpoint_dir=fs.join(folder, "checkpoints"), checkpoint_every=config.checkpoint_every,
      keep_checkpoints=config.keep_checkpoints, metrics_dir=folder,
      images_per_step=config.batch_size * d_steps * k_members,
      describe=lambda s: f"mean d_loss={s['d_loss']:.4f} g_loss={s['g_loss']:.4f} {s['images_per_sec']:.0f} img/s",
      check=nonfinite.health_check(config.on_nonfinite, metric_names), nonfinite_hint=nonfinite.HINT,
      periodic=[loop.Periodic(config.sample_every, save_samples)], is_writer=is_writer)
  if result.stopped:
    return [{**result.last_record, "stopped_by": result.stopped_by, "stopped_at": result.stopped_at}] * k_members
  records = _member_records(result, last, folder, k_members, is_writer)
  for k, (member, record) in enumerate(zip(members, records)):
    if finished_record(member.workdir, config.num_steps) is not None:
      continue  # written by an earlier call that stopped before the others
    # Orbax saves are collective: every process saves, process 0 writes the files.
    ckpt = checkpoint.Checkpointer(fs.join(member.workdir, "checkpoints"), max_to_keep=1, async_save=False)
    try:
      ckpt.save(config.num_steps, parallel.member(result.state, k))
    finally:
      ckpt.close()
    if is_writer:
      fs.write_json(fs.join(member.workdir, FINAL_METRICS), record)
  return records


def _member_records(result: loop.LoopResult, last: dict[str, Any], folder: str, k_members: int,
                    is_writer: bool) -> list[dict[str, Any]]:
  """Each member's last metrics: from this call's last step, or (a call that resumed at the end and
  ran no step) from the group folder, where they are kept before any member folder is written."""
  path = fs.join(folder, MEMBER_METRICS)
  if not last and fs.exists(path):
    return fs.read_json(path)
  own = {k: np.asarray(jax.device_get(v)) for k, v in last.items()}
  health = np.asarray(jax.device_get(result.state.health)["nonfinite_steps"])
  records = [{**result.last_record, **{name: float(v[k]) for name, v in own.items()},
              "nonfinite_skips": int(health[k])} for k in range(k_members)]
  if is_writer:
    fs.write_json(path, records)
  return records
