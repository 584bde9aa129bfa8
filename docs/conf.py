"""Sphinx configuration of the mrflax documentation (``make docs``).

The build is offline and warning-free (``sphinx-build -W --keep-going``):

* MathJax 3 is served from ``_static/mathjax`` (``make docs`` unpacks the pinned npm package
  into ``docs/_vendor/mathjax``, see ``docs/fetch_mathjax.sh``): no CDN.
* Intersphinx reads small inventories written here from ``docs/inventories.py`` (no download);
  the links they produce point at the projects' online documentation.
* The Colab notebooks (``colabs/*.ipynb``) are copied into ``docs/notebooks/`` and executed on
  every build; a failing cell fails the build. ``MRFLAX_DOCS_EXECUTE=cache`` (jupyter-cache) or
  ``=off`` skips re-execution while iterating on the text.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import typing

# jaxtyping then names array annotations ``Float[Array, 'b h w c']`` instead of
# ``Float[jaxlib._jax.Array, 'b h w c']`` (its documented switch; must precede its import).
typing.GENERATING_DOCUMENTATION = "mrflax"

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))

import inventories  # noqa: E402  (docs/inventories.py)

import mrflax  # noqa: E402

# -- Project ----------------------------------------------------------------------------------

project = "mrflax"
author = "the mrflax authors"
copyright = "the mrflax authors"
release = version = mrflax.__version__

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.doctest",
  "sphinx.ext.intersphinx",
  "sphinx.ext.mathjax",
  "sphinx.ext.graphviz",
  "sphinx.ext.viewcode",
  "myst_nb",
]

exclude_patterns = ["_build", "_vendor", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# -- The Colab notebooks: copied from colabs/ (their one source), executed at build time --------

NOTEBOOKS = DOCS / "notebooks"
NOTEBOOKS.mkdir(exist_ok=True)
for _nb in sorted((ROOT / "colabs").glob("[0-9][0-9]_*.ipynb")):
  _dst = NOTEBOOKS / _nb.name
  if not _dst.exists() or _dst.read_bytes() != _nb.read_bytes():
    shutil.copy2(_nb, _dst)

nb_execution_mode = os.environ.get("MRFLAX_DOCS_EXECUTE", "force")
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
nb_execution_timeout = 900  # seconds per cell (the longest cells train for about a minute)
nb_execution_in_temp = True  # files a notebook writes go to a temporary directory
nb_merge_streams = True
# stderr carries XLA/absl log lines ("Very slow compile?" on a busy machine), not content; the
# notebooks print their results to stdout. Still visible in `make test`'s notebook runs.
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# -- API pages: autodoc + autosummary tables + napoleon (Google-style docstrings) ---------------

autosummary_generate = False  # the tables link to the autodoc entries on the same page
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
add_module_names = False
python_display_short_literal_types = True

# -- Cross-references to JAX, Flax, optax, NumPy (offline inventories) --------------------------

intersphinx_mapping = inventories.write_all(DOCS / "_build" / "inventories")
intersphinx_timeout = 1  # never used (local files), kept low in case a URL slips in
intersphinx_disabled_reftypes = ["std:doc"]

# -- Maths: MathJax 3, served locally ------------------------------------------------------------

MATHJAX_DIR = DOCS / "_vendor" / "mathjax"
if not (MATHJAX_DIR / "tex-mml-chtml.js").exists():
  raise RuntimeError(
    f"MathJax is missing from {MATHJAX_DIR}: run `make docs` (it runs docs/fetch_mathjax.sh, "
    "which unpacks the pinned npm package mathjax@3 there)"
  )
mathjax_path = "mathjax/tex-mml-chtml.js"  # relative to _static (html_static_path below)
mathjax3_config = {"chtml": {"displayAlign": "center"}}

# -- Diagrams: Graphviz's dot, run at build time -------------------------------------------------

graphviz_output_format = "svg"
graphviz_dot_args = ["-Gfontname=DejaVu Sans", "-Nfontname=DejaVu Sans", "-Efontname=DejaVu Sans"]

# -- HTML ---------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = f"mrflax {release}"
html_static_path = ["_static", "_vendor"]
html_css_files = ["mrflax.css"]
html_theme_options = {
  "show_toc_level": 2,
  "use_download_button": True,
  "home_page_in_toc": True,
  "navigation_with_keys": False,
}
html_last_updated_fmt = None

# -- Re-exported constants and type aliases ------------------------------------------------------
# autodoc finds the ``#:`` comment of a module-level name only in the module being documented
# (``mrflax.data``), not in the one that assigns it (``mrflax.data.registry``), and falls back to
# the docstring of the value's type (``dict``'s). Take the comment from where it is written.


def _attribute_docs(app, what, name, obj, options, lines):
  if what != "data":
    return
  import importlib

  import check_coverage  # docs/check_coverage.py

  modname, _, attr = name.rpartition(".")
  doc = check_coverage.attribute_doc(importlib.import_module(modname), attr)
  if doc:
    lines[:] = [*doc.splitlines(), ""]


# -- Flax NNX modules: the constructor's signature ---------------------------------------------
# nnx.Module's metaclass defines ``__call__(cls, *args, **kwargs)``, which autodoc would show as
# every module's signature; show ``__init__``'s instead.


def _nnx_signature(app, what, name, obj, options, signature, return_annotation):
  if what != "class" or not isinstance(obj, type):
    return None
  from flax import nnx
  from sphinx.util import inspect as sphinx_inspect

  if not issubclass(obj, nnx.Module) or "__init__" not in vars(obj):
    return None
  sig = sphinx_inspect.signature(obj.__init__, bound_method=True)
  shown = sphinx_inspect.stringify_signature(
    sig, show_return_annotation=False, unqualified_typehints=True
  )
  return shown, None


def setup(app):
  app.connect("autodoc-process-docstring", _attribute_docs)
  app.connect("autodoc-process-signature", _nnx_signature)
