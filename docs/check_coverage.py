"""Fails when a public name of mrflax has no documentation.

Every sub-package ``mrflax.<name>`` (package or module, not private) must have a page
``docs/api/<name>.rst``, and for every name in its ``__all__`` (a module without ``__all__``:
the functions and classes it defines and its UPPERCASE constants):

* the page documents it with an ``.. autofunction::`` / ``autoclass`` / ``autodata`` /
  ``autoexception`` directive, and documents nothing that is not public any more;
* the object has a docstring of its own: functions and classes (a dataclass's generated
  ``Name(field, ...)`` signature does not count), or, for constants and type aliases, a ``#:``
  comment before the assignment or a string literal after it.

Run by ``make docs`` before Sphinx (``python docs/check_coverage.py``); exits 1 listing every
gap. Optax and chex keep the same kind of check.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil
import re
import sys
import types

from sphinx.pycode import ModuleAnalyzer

API = pathlib.Path(__file__).resolve().parent / "api"
DIRECTIVE = re.compile(r"^\.\. auto(function|class|data|exception|attribute)::\s+(\S+)", re.M)


def subpackages() -> list[str]:
  """The public sub-packages and modules of mrflax (``mrflax.wavelets``, ``mrflax.sharding``...)."""
  import mrflax

  return sorted(
    f"mrflax.{info.name}"
    for info in pkgutil.iter_modules(mrflax.__path__)
    if not info.name.startswith("_")
  )


def public_names(module: types.ModuleType) -> list[str]:
  """``__all__``, or what a module without one defines itself."""
  if hasattr(module, "__all__"):
    return list(module.__all__)
  source = inspect.getsource(module)
  names = []
  for name, obj in vars(module).items():
    if name.startswith("_"):
      continue
    defined_here = getattr(obj, "__module__", None) == module.__name__
    if (inspect.isfunction(obj) or inspect.isclass(obj)) and defined_here:
      names.append(name)
    elif name.isupper() and re.search(rf"^{name}\s*[:=]", source, re.M):
      names.append(name)
  return sorted(names)


def attribute_doc(package: types.ModuleType, name: str) -> str | None:
  """The ``#:`` comment or docstring of a module-level assignment ``name = ...``."""
  prefix = package.__name__
  candidates = [m for m in list(sys.modules) if m == prefix or m.startswith(prefix + ".")]
  for modname in sorted(candidates):
    try:
      docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
    except Exception:  # extension modules, namespace packages
      continue
    lines = docs.get(("", name))
    if lines and "".join(lines).strip():
      return "\n".join(lines)
  return None


def own_docstring(obj: object) -> str | None:
  if inspect.isclass(obj):
    doc = obj.__dict__.get("__doc__")
    if doc and re.match(rf"{re.escape(obj.__name__)}\(", doc):
      return None  # dataclasses generate "Name(field: type, ...)"
    return doc
  return getattr(obj, "__doc__", None)


def check(modname: str) -> list[str]:
  module = importlib.import_module(modname)
  short = modname.removeprefix("mrflax.")
  page = API / f"{short}.rst"
  if not page.exists():
    return [f"{modname}: no API page {page.relative_to(API.parent.parent)}"]
  text = page.read_text()
  on_page = {name.rsplit(".", 1)[-1] for _, name in DIRECTIVE.findall(text)}
  problems = []
  names = public_names(module)
  for name in names:
    where = f"{modname}.{name}"
    if name not in on_page:
      problems.append(f"{where}: not documented on {page.name} (add an autodoc directive)")
    obj = getattr(module, name)
    is_code = inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)
    defined_in_mrflax = str(getattr(obj, "__module__", "")).startswith("mrflax")
    if is_code and defined_in_mrflax:
      doc = own_docstring(obj)
    else:  # constants and type aliases: documented where they are assigned
      doc = attribute_doc(module, name)
    if not (doc and doc.strip()):
      problems.append(f"{where}: no docstring (a '#:' comment for constants and aliases)")
  for name in sorted(on_page - set(names)):
    problems.append(f"{modname}.{name}: on {page.name} but not public (not in __all__)")
  return problems


def main() -> int:
  problems = []
  counted = 0
  for modname in subpackages():
    problems += check(modname)
    counted += len(public_names(importlib.import_module(modname)))
  if problems:
    print(f"docs coverage: {len(problems)} problem(s):", *problems, sep="\n  ")
    return 1
  print(
    f"docs coverage: all {counted} public names of {len(subpackages())} sub-packages documented"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
