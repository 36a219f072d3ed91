"""Run registration code right after a third-party library finishes importing.

`import hf_wlora` must stay light (peft, diffusers and transformers' model classes cost seconds each to import),
yet a saved mLoRA adapter must load through `PeftModel.from_pretrained` whether the user imported peft before or
after hf_wlora. So registration is tied to the import of the library it registers with: if the library is already
imported, the registering module is imported now; otherwise a meta-path finder imports it as soon as the library's
own module has finished executing.

The registering module does its work at import time. When the library import was itself triggered from inside the
registering module's package (say `hf_wlora.fields.modeling_neural_field` imports transformers), importing the
registering module now would meet half-initialised modules; the hook then does nothing, and the package's defining
module registers itself once it has finished (see `hf_wlora/fields/modeling_neural_field.py` and
`hf_wlora/tuners/mlora/__init__.py`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType

_pending: dict[str, list[str]] = {}
_lock = threading.Lock()


class _LoaderThatRegistersAfterwards(importlib.abc.Loader):
    def __init__(self, wrapped: importlib.abc.Loader, library: str) -> None:
        self._wrapped = wrapped
        self._library = library

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        # The library restores its real loader so that reloads and introspection see the original.
        module.__loader__ = self._wrapped
        if module.__spec__ is not None:
            module.__spec__.loader = self._wrapped
        _run_registrations(self._library)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None and spec.loader is not None:
                spec.loader = _LoaderThatRegistersAfterwards(spec.loader, fullname)
                return spec
        return None


_finder = _AfterImportFinder()


def _package_is_importing(module: str) -> bool:
    """Whether any module of `module`'s package is still executing its import."""
    package = module.rpartition(".")[0]
    return any(
        (name == package or name.startswith(package + ".")) and getattr(loaded.__spec__, "_initializing", False)
        for name, loaded in list(sys.modules.items())
        if loaded is not None and getattr(loaded, "__spec__", None) is not None
    )


def _run_registrations(library: str) -> None:
    with _lock:
        modules = _pending.pop(library, [])
    for module in modules:
        if not _package_is_importing(module):
            importlib.import_module(module)


def register_after_import(library: str, registering_module: str) -> None:
    """Import `registering_module` once `library` is imported (immediately if it already is)."""
    if library in sys.modules:
        if not _package_is_importing(registering_module):
            importlib.import_module(registering_module)
        return
    with _lock:
        _pending.setdefault(library, []).append(registering_module)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
