"""benchmarks.report: the generated table replaces only its own block of the README."""

from benchmarks import report


def test_render_and_update(tmp_path):
  results = {
    "scan": dict(
      benchmark="scan",
      ratio_depth=16,
      scan_over_unrolled=1.12,
      scan_xla_over_unrolled=7.6,
      compile_64_over_8=1.25,
      depths=[8, 64],
      cpu_count=2,
      processor="x86_64",
      backend="cpu",
      jax="0.10.2",
      flax="0.12.8",
      recorded="2026-12-02",
    ),
    "wavelets": dict(
      benchmark="wavelets",
      mrflax_s=0.04,
      over_copy=2.97,
      speedup_vs_pywt=6.2,
      machine=dict(cpu_count=2, processor="x86_64", backend="cpu", jax="0.10.2", flax="0.12.8"),
    ),
    "odd": dict(benchmark="scan"),  # missing keys: shown as unreadable, not a crash
  }
  block = report.render(results)
  assert "scan/unrolled step **1.12**" in block and "≤ 1.15: met" in block
  assert "≤ 1.5: met" in block and "2-core x86_64 cpu, jax 0.10.2" in block
  assert "2.97× a copy" in block and "(unreadable" in block
  readme = tmp_path / "README.md"
  readme.write_text("# benchmarks\n\nhand-written intro\n\n## Section\nkept\n")
  report.update_readme(readme, block)
  report.update_readme(readme, report.render({"scan": results["scan"]}))  # replaced, not added
  text = readme.read_text()
  assert text.count(report.START) == 1 and text.count(report.END) == 1
  assert "hand-written intro" in text and "## Section\nkept" in text
  assert "2.97× a copy" not in text
