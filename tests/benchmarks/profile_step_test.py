"""benchmarks/profile_step.py: HLO parsing, operation classes, and a tiny profiled step."""

import dataclasses

import jax
import pytest

from benchmarks import profile_step as ps
from benchmarks.common import hvae_train_step
from mrflax.nn import ExecPolicy, conv_ops, get_preset

# the tests' tiny8 preset in RGB with the DMoL, so that every operation class appears
TINY = dataclasses.replace(get_preset("tiny8"), image_channels=3, likelihood="dmol", num_mixtures=2)


@pytest.fixture(scope="module", params=["xla", "custom"])
def tiny_hlo(request):
  b = hvae_train_step(TINY, batch=2, policy=ExecPolicy(conv_backward=request.param))
  return request.param, ps.parse_hlo(b["compiled"].as_text())


def test_flops_per_class_are_consistent(tiny_hlo):
  vjp, instrs = tiny_hlo
  f = ps._hlo_flops(instrs)
  # every 3x3 convolution has one weight gradient of the same FLOPs; the input gradient skips
  # the stem (its input is the image), so it is smaller but more than half
  assert f["conv3x3 forward"] > 0
  assert f["conv3x3 weight-grad"] == pytest.approx(f["conv3x3 forward"], rel=1e-9)
  assert 0.5 * f["conv3x3 forward"] < f["conv3x3 input-grad"] < f["conv3x3 forward"]
  # 1x1: input and weight gradient, each the forward's FLOPs (XLA's own VJP leaves a few
  # metadata-less 1x1 products at 1x1 resolution that read as forward: within 2%)
  assert f["conv1x1 backward"] == pytest.approx(2 * f["conv1x1 forward"], rel=0.02)
  for c in ("likelihood forward", "KL forward", "other forward", "optimizer"):
    assert f.get(c, 0.0) == 0.0, (vjp, c)


def test_classes_cover_likelihood_kl_and_optimizer(tiny_hlo):
  vjp, instrs = tiny_hlo
  seen = {ps.classify_instruction(d) for d in instrs.values() if instrs}
  assert {"likelihood forward", "KL forward", "optimizer", "other backward"} <= seen
  # the custom VJP's weight-gradient products are found by their einsum in the op names
  assert ps.DW_EINSUM == conv_ops.DW_EINSUM
  if vjp == "custom":
    assert any(conv_ops.DW_EINSUM in d["op_name"] for d in instrs.values())
  assert seen - {None} <= set(ps.CLASSES)


def test_thread_time_by_class_sums_events_and_keeps_the_unmapped_apart():
  instrs = {
    "conv.1": dict(
      opcode="convolution",
      op_name="jit(f)/jvp()/conv",
      frames="",
      heavy=[("convolution", 100, (3, 3), False)],
    ),
    "while.2": dict(opcode="while", op_name="", frames="", heavy=[]),
  }
  per, unmapped = ps.thread_time_by_class(
    [("conv.1", 5.0), ("conv.1", 2.0), ("while.2", 9.0), ("ThunkExecutor::Execute", 3.0)], instrs
  )
  assert per == {"conv3x3 forward": 7.0}  # the while is a container: its children are events
  assert unmapped == {"ThunkExecutor::Execute": 3.0}


def test_torch_events_are_classified_by_kernel_size_and_labels():
  c = ps.classify_torch_event
  w3, w1 = [96, 96, 3, 3], [96, 384, 1, 1]
  assert c("aten::convolution", [], [[8, 96, 32, 32], w3, [96]]) == "conv3x3 forward"
  assert c("aten::mkldnn_convolution", [("aten::convolution", [[8], w1])], []) == "conv1x1 forward"
  back = ("aten::convolution_backward", [[8, 96, 32, 32], [8, 384, 32, 32], w1])
  assert c("aten::mm", [back, ("autograd::engine::evaluate_function: X", [])], []) == (
    "conv1x1 backward"
  )
  assert c("aten::add", [("autograd::engine::evaluate_function: AddBackward0", [])], []) == (
    "other backward"
  )
  assert c("aten::log", [("mrflax::dmol", [])], []) == "likelihood forward"
  assert c("aten::exp", [("mrflax::kl", [])], []) == "KL forward"
  assert c("aten::_foreach_mul_", [("mrflax::optimizer", [])], []) == "optimizer"
  assert c("aten::relu", [], []) == "other forward"
  assert (
    ps.merge_for_torch({"conv3x3 input-grad": 2.0, "conv3x3 weight-grad": 3.0})["conv3x3 backward"]
    == 5.0
  )


def test_profile_mrflax_attributes_the_step():
  r = ps.profile_mrflax(TINY, batch=2, steps=2, conv_backward="xla")
  assert set(r["seconds"]) == set(ps.CLASSES)
  assert sum(r["seconds"].values()) == pytest.approx(r["step_s"], abs=1e-3)  # rounded to 1e-4
  assert r["seconds"]["conv3x3 forward"] > 0 and r["seconds"]["optimizer"] > 0
  assert r["busy_over_wall"] > 0.2  # on 4 fake devices and a shared machine: loose
  assert all(v > 0 for v in r["gflops_per_s"].values())
  assert r["other_top"] and all(len(x) == 3 for x in r["other_top"])
  jax.clear_caches()


def test_profile_mrflax_scanned_step_gives_seconds_without_flops():
  r = ps.profile_mrflax(
    TINY, batch=2, steps=1, conv_backward="custom", exec_mode="scan", remat="block"
  )
  assert (r["exec_mode"], r["remat"]) == ("scan", "block")
  assert sum(r["seconds"].values()) == pytest.approx(r["step_s"], abs=1e-3)
  # the loop bodies' convolutions are events too; no FLOPs (a body is counted once in the HLO)
  assert r["seconds"]["conv3x3 forward"] > 0 and r["seconds"]["conv3x3 weight-grad"] > 0
  assert r["flops"] == {} and r["gflops_per_s"] == {}
  jax.clear_caches()
