"""Work done around the first import of another package, so that ``import kres`` itself loads
neither TensorFlow nor Keras (a command must be able to choose the Keras backend after it) and
still keeps its promises about them: TensorFlow's native start-up notices are filtered whenever
it loads, and kres' layers are registered with Keras whenever Keras loads (see kres/__init__.py).

An entry on ``sys.meta_path`` finds the package as the other finders would and wraps its
loader, so the import runs inside a context manager; the entry leaves once the package loaded.
"""

from __future__ import annotations

import sys


def on_first_import(name: str, around) -> None:
    """Run the first import of top-level package ``name`` inside ``around()`` (a context
    manager factory); when ``name`` is imported already, run an empty block inside it now."""
    if name in sys.modules:
        with around():
            return
    if not any(isinstance(f, _FirstImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _FirstImport(name, around))


class _FirstImport:
    def __init__(self, name, around):
        self.name, self.around = name, around

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        if hasattr(spec.loader, "exec_module"):
            spec.loader = _Around(spec.loader, self)
        return spec


class _Around:
    """A package's own loader, whose ``exec_module`` runs inside the finder's ``around()``."""

    def __init__(self, loader, finder):
        self._loader, self._finder = loader, finder

    def __getattr__(self, attribute):  # resource readers, get_code, is_package: the loader's
        return getattr(self._loader, attribute)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        with self._finder.around():
            self._loader.exec_module(module)
