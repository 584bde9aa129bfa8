"""benchmarks/run_all.py and report.py: the entries against the PyTorch VDVAE."""

from benchmarks import report, run_all


def test_peer_entries_name_the_clone_and_skip_without_it(tmp_path):
  names = [n for n in run_all.BENCHMARKS if n.startswith(("pytorch_vdvae", "profile_step"))]
  assert set(names) == {
    "pytorch_vdvae_cifar10",
    "pytorch_vdvae_fashion32_rgb",
    "profile_step_cifar10",
    "profile_step_fashion32_rgb",
    "profile_step_fashion32_rgb_scan",
  }
  for n in names:
    _, extra = run_all._command(n)
    assert "$VDVAE_DIR" in extra
    why = run_all.peer_missing(extra, {})
    assert why and "openai/vdvae" in why and "VDVAE_DIR" in why
    assert "not a clone" in run_all.peer_missing(extra, {"VDVAE_DIR": str(tmp_path)})
  (tmp_path / "vae.py").write_text("")
  why = run_all.peer_missing(run_all._command(names[0])[1], {"VDVAE_DIR": str(tmp_path)})
  try:
    import torch  # noqa: F401

    assert why is None
  except ImportError:
    assert why is not None and "pip install torch" in why
  assert run_all.peer_missing(["--settle"], {}) is None  # other entries are never skipped


def test_report_summarises_the_peer_results():
  bench = dict(
    preset="cifar10",
    batch=8,
    mrflax_mode="scan",
    mrflax_remat="block",
    mrflax_step_s=9.77,
    torch_step_s=5.94,
    speedup_mrflax_over_torch=0.594,
    speedup_ci=[0.454, 0.776],
    speedup_goal=1.25,
    mrflax_peak_fraction=0.327,
    torch_peak_fraction=0.538,
  )
  block = report.render({"pytorch_vdvae_cifar10": {"benchmark": "pytorch_vdvae", "bench": bench}})
  assert "images/s **0.594** [0.454, 0.776]" in block and "≥ 1.25" in block
  assert "**not met**" in block
  ok = {**bench, "speedup_ci": [1.3, 1.4]}
  assert ": met" in report.render({"x": {"benchmark": "pytorch_vdvae", "bench": ok}})
  prof = dict(
    benchmark="profile_step",
    preset="cifar10",
    batch=8,
    threads=1,
    mrflax=dict(step_s=27.0, seconds={"other forward": 7.1, "conv3x3 forward": 2.4}),
    torch=dict(step_s=10.0),
  )
  block = report.render({"profile_step_cifar10": prof})
  assert "other forward 7.10 s" in block and "PyTorch 10.0 s" in block
