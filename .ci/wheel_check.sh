#!/usr/bin/env bash
# The package a user installs: builds the sdist and the wheel (python -m build), checks their
# metadata (twine check --strict), installs the wheel ALONE (no extras) into a fresh venv, imports
# every sub-package, runs README.md's library snippets against it from a temporary directory (not
# the source tree), and checks that an optional extra that is missing is named in the error.
# Needs the package registry (PyPI) for the build backend and the wheel's dependencies.
# Usage: bash .ci/wheel_check.sh   (PYTHON=python3.12 to pick the interpreter; KEEP=1 keeps $tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
PYTHON="${PYTHON:-python3}"
tmp="$(mktemp -d)"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

echo "== wheel check: build tools in $tmp/tools"
"$PYTHON" -m venv "$tmp/tools"
"$tmp/tools/bin/pip" install --quiet --upgrade pip
"$tmp/tools/bin/pip" install --quiet "build==1.6.1" "twine==7.0.0"

echo "== python -m build (sdist, then the wheel from the sdist)"
"$tmp/tools/bin/python" -m build --outdir "$tmp/dist" . >"$tmp/build.log" 2>&1 \
  || { tail -40 "$tmp/build.log"; exit 1; }
ls -l "$tmp/dist"
wheel="$(ls "$tmp"/dist/mrflax-*.whl)"
sdist="$(ls "$tmp"/dist/mrflax-*.tar.gz)"

echo "== twine check --strict"
"$tmp/tools/bin/twine" check --strict "$wheel" "$sdist"

echo "== the wheel holds the package and nothing else"
"$tmp/tools/bin/python" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = sorted({n.split("/")[0] for n in names})
assert all(t == "mrflax" or t.startswith("mrflax-") for t in tops), tops
assert "mrflax/py.typed" in names, "py.typed missing"
print(f"{len(names)} files, top-level entries: {tops}")
EOF

echo "== fresh venv: pip install the wheel (core dependencies only)"
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --upgrade pip
"$tmp/venv/bin/pip" install --quiet "$wheel"
"$tmp/venv/bin/pip" list --format=freeze >"$tmp/freeze.txt"
echo "$(wc -l <"$tmp/freeze.txt") distributions installed; none of the optional ones:"
for opt in tensorflow-datasets tensorboard matplotlib scikit-learn ml-collections; do
  if grep -qi "^${opt}==" "$tmp/freeze.txt"; then echo "  error: $opt was installed"; exit 1; fi
done
echo "  ok (tensorflow-datasets, tensorboard, matplotlib, scikit-learn, ml-collections absent)"

echo "== README snippets against the installed wheel (from $tmp/run, not the source tree)"
mkdir "$tmp/run"
cp README.md "$tmp/run/README.md"
cd "$tmp/run"
JAX_PLATFORMS=cpu "$tmp/venv/bin/python" - <<'EOF'
import importlib, pathlib, re, sys, tempfile

import mrflax

site = pathlib.Path(mrflax.__file__).resolve()
assert "site-packages" in site.parts, f"mrflax imported from {site}, not the installed wheel"
print(f"mrflax {mrflax.__version__} from {site.parent}")

subpackages = ["wavelets", "likelihoods", "diffusion", "ghm", "nn", "training", "evaluation",
               "data", "sharding"]
for name in subpackages:
  importlib.import_module(f"mrflax.{name}")
print("imported:", ", ".join(f"mrflax.{n}" for n in subpackages))

# The same extraction as tests/readme_test.py: every ```python block, in order, one namespace.
blocks = re.findall(r"```python\n(.*?)```", pathlib.Path("README.md").read_text(), flags=re.S)
assert len(blocks) >= 2, "README.md has no library snippets"
namespace: dict = {}
for block in blocks:
  exec(compile(block, "README.md", "exec"), namespace)
assert namespace["loss"].shape == () and namespace["samples"].shape == (16, 8, 8, 1)
print(f"{len(blocks)} README snippets ran; loss = {float(namespace['loss']):.4f}")

# A missing extra is named in the error; what works without it still works.
from mrflax import evaluation, training

try:
  evaluation.save_kl_plot([0.1, 0.2], [1, 4], "kl.png")
except ImportError as err:
  assert "mrflax[plots]" in str(err), err
  print("save_kl_plot without matplotlib:", err)
else:
  sys.exit("save_kl_plot worked without matplotlib?")
w = training.MetricWriter(tempfile.mkdtemp())
w.write(1, {"loss": 1.0})
w.close()
assert w.path.exists() and not list(w.path.parent.glob("events.*"))
try:
  training.MetricWriter(tempfile.mkdtemp(), tensorboard=True)
except ImportError as err:
  assert "mrflax[tensorboard]" in str(err), err
  print("MetricWriter(tensorboard=True) without tensorboard:", err)
else:
  sys.exit("MetricWriter(tensorboard=True) worked without tensorboard?")
EOF
cd "$root"
echo "== wheel check passed in $((SECONDS - start)) s"
