"""The non-finite guards: a bad update never reaches the state, and the health counters say why."""
import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax.train import nonfinite


@flax.struct.dataclass
class _State:
  step: jax.Array
  params: dict
  health: dict


def _state() -> _State:
  return _State(step=jnp.asarray(4, jnp.int32), params={"w": jnp.arange(3.0), "b": jnp.ones(())},
                health=nonfinite.initial_health())


def _sgd(state: _State, grads: dict) -> _State:
  return state.replace(params=jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads))


def _guarded(guard: str, state: _State, grads: dict, metrics: dict):
  if guard == "update":
    return jax.jit(lambda s, g, m: nonfinite.guard_update(s, lambda: _sgd(s, g), m, g))(state, grads, metrics)
  return jax.jit(lambda s, g, m: nonfinite.guard_nonfinite(s, _sgd(s, g).replace(step=s.step + 1), m))(
      state, grads, metrics)


@pytest.mark.parametrize("guard", ["update", "state"])
def test_a_finite_update_is_applied_and_counts_no_skip(guard):
  state, grads = _state(), {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.asarray(3.0)}
  new, metrics = _guarded(guard, state, grads, {"loss": jnp.asarray(0.5)})
  chex.assert_trees_all_close(new.params, _sgd(state, grads).params)
  assert int(new.step) == 5 and int(new.health["nonfinite_steps"]) == 0 and int(new.health["first_bad_step"]) == -1
  assert float(metrics["nonfinite"]) == 0.0 and float(metrics["loss"]) == 0.5


@pytest.mark.parametrize("guard", ["update", "state"])
@pytest.mark.parametrize("bad_loss, bad_grad, mask", [(True, False, 0b01), (False, True, 0b10), (True, True, 0b01)])
def test_a_non_finite_loss_or_gradient_keeps_the_old_parameters_and_is_recorded(guard, bad_loss, bad_grad, mask):
  state = _state()
  grads = {"w": jnp.array([1.0, jnp.inf if bad_grad else 2.0, 0.5]), "b": jnp.asarray(1.0)}
  metrics = {"loss": jnp.asarray(jnp.nan if bad_loss else 0.5)}
  new, out = _guarded(guard, state, grads, metrics)
  chex.assert_trees_all_equal(new.params, state.params)
  # The step still advances (the loop's counters and the RNG stream follow it) and the skip is counted.
  assert int(new.step) == 5 and int(new.health["nonfinite_steps"]) == 1 and int(new.health["first_bad_step"]) == 5
  assert int(new.health["first_bad_mask"]) == mask and float(out["nonfinite"]) == 1.0
  assert nonfinite.decode_mask(mask, ["loss"]) == (["loss"] if bad_loss else ["gradients/parameters"])


def test_only_the_first_bad_step_is_recorded():
  state = _state()
  bad = {"w": jnp.full(3, jnp.nan), "b": jnp.asarray(0.0)}
  for _ in range(2):
    state, _ = _guarded("update", state, bad, {"loss": jnp.asarray(1.0)})
  assert int(state.step) == 6 and int(state.health["nonfinite_steps"]) == 2
  assert int(state.health["first_bad_step"]) == 5


def test_guard_update_builds_the_new_state_only_inside_the_conditional():
  """Its point: the update is computed in the branch, so the compiled step copies no state to choose one."""
  state, grads = _state(), {"w": jnp.ones(3), "b": jnp.ones(())}
  hlo = jax.jit(lambda s, g: nonfinite.guard_update(s, lambda: _sgd(s, g), {"loss": jnp.sum(g["w"])}, g),
                donate_argnums=0).lower(state, grads).as_text()
  # The update's subtraction lies in a branch of the conditional, and nowhere before or after it.
  main = hlo[hlo.index("func.func public @main"):]
  start, end = main.index('"stablehlo.case"'), main.index("}) : (tensor<i32>)")
  assert "stablehlo.subtract" in main[start:end]
  assert "stablehlo.subtract" not in main[:start] + main[end:]
  np.testing.assert_allclose(_guarded("update", state, grads, {"loss": jnp.asarray(0.0)})[0].params["w"],
                             np.arange(3.0) - 0.1)


@pytest.mark.parametrize("loss, grad, applied", [(0.5, 1.0, True), (jnp.nan, 1.0, False), (0.5, -jnp.inf, False)])
def test_apply_if_finite_drops_an_update_with_a_non_finite_loss_or_gradient(loss, grad, applied):
  old = {"w": jnp.arange(3.0)}
  grads = {"w": jnp.array([1.0, grad, 1.0])}
  kept = jax.jit(lambda l, g: nonfinite.apply_if_finite(old, lambda: jax.tree.map(lambda p, d: p - d, old, g),
                                                        l, g))(jnp.asarray(loss), grads)
  np.testing.assert_array_equal(kept["w"], old["w"] - grads["w"] if applied else old["w"])


def test_a_finite_gradient_that_would_overflow_adams_second_moment_is_dropped():
  """|g| = 1e20 is finite, g^2 is not: Adam would store an Inf moment (and freeze that weight)."""
  tx = optax.adam(1e-3)
  params = {"w": jnp.ones(3)}
  state = {"params": params, "opt": tx.init(params)}

  def step(state, grads):
    def updated():
      updates, opt = tx.update(grads, state["opt"], state["params"])
      return {"params": optax.apply_updates(state["params"], updates), "opt": opt}
    return nonfinite.apply_if_finite(state, updated, jnp.asarray(0.0), grads)

  unguarded_nu = tx.update({"w": jnp.array([1.0, 1e20, 1.0])}, state["opt"], params)[1][0].nu["w"]
  assert not np.isfinite(np.asarray(unguarded_nu)).all()  # what the guard prevents
  kept = jax.jit(step)(state, {"w": jnp.array([1.0, 1e20, 1.0])})
  chex.assert_trees_all_equal(kept, state)
  applied = jax.jit(step)(state, {"w": jnp.array([1.0, 1e10, 1.0])})
  chex.assert_tree_all_finite(applied)
  assert not np.array_equal(applied["params"]["w"], params["w"])
