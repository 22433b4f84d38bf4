"""Restricted unpickling of ``torch.save`` files: tensors are rebuilt, nothing else ever runs.

A pickle is a program: each global it names is imported and may be called with arguments the
file chooses (``os.system`` via ``__reduce__``, a class whose ``__setstate__`` does I/O...).
:class:`RestrictedUnpickler` imports nothing. Its ``find_class`` returns

- for the names in :func:`_rebuilt_globals` (torch's tensor rebuild helpers, dtypes, sizes,
  devices, ``collections.OrderedDict``, ``set``/``frozenset``/``bytearray``/``complex`` and the
  ``_codecs.encode`` that protocol 2 uses for ``bytes``) the real object; the rebuild helpers are
  wrapped so that they run only on arguments free of placeholders;
- for every other global a fresh subclass of :class:`Placeholder` named after it. A placeholder
  stores what the pickle hands it (constructor arguments, ``__setstate__`` state, items) and has no
  method that imports, calls or looks up anything, so no code from the file runs, whichever name
  it carries.

:func:`torch_load_restricted` runs ``torch.load`` with this unpickler (``pickle_module=``), so
torch's zip and legacy formats, its storages and memory mapping work as usual, and records every
global the file names in an :class:`UnpickleReport`. Any global may become a placeholder: a
released checkpoint can carry classes nobody can foresee (the authors' own ``ldm.*`` configs), and
those load and are skipped like OmegaConf or Lightning objects. :func:`is_denied_global` names
the few globals (:data:`DENIED_GLOBALS`) that a file can only carry in order to run code; the
caller refuses such files. Placeholders are inert either way, so that list decides only whether
an obviously malicious file is refused (with a message that nothing ran) rather than silently
loaded; it can never let code run.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import pickle
import types
import zipfile
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

#: Globals that a file can only name in order to run code when it is unpickled: process, file,
#: network and interpreter access, evaluators and importers, other unpicklers, torch's own loaders
#: and native ops, and the gadgets that turn a pickle's calls into arbitrary ones (getattr,
#: functools.partial, operator's getters). A name ending in "." stands for a whole module tree.
#: Placeholders are inert either way, so this list decides only whether an obviously malicious
#: file is refused (with a message that nothing ran) rather than silently loaded; it can never let
#: code run, and a name it misses only means that such a file loads with that entry skipped.
DENIED_GLOBALS: tuple[str, ...] = (
    # processes, files, network, the interpreter
    "os.",
    "posix.",
    "nt.",
    "subprocess.",
    "_posixsubprocess.",
    "_winapi.",
    "sys.",
    "shutil.",
    "pty.",
    "signal.",
    "_signal.",
    "ctypes.",
    "_ctypes.",
    "multiprocessing.",
    "_multiprocessing.",
    "socket.",
    "_socket.",
    "webbrowser.",
    "io.open",
    "io.open_code",
    "io.FileIO",
    "_io.open",
    "_io.open_code",
    "_io.FileIO",
    # evaluating, compiling or importing code
    "builtins.eval",
    "builtins.exec",
    "builtins.compile",
    "builtins.open",
    "builtins.__import__",
    "builtins.getattr",
    "builtins.setattr",
    "builtins.delattr",
    "builtins.globals",
    "builtins.locals",
    "builtins.vars",
    "builtins.input",
    "builtins.breakpoint",
    "builtins.help",
    "builtins.exit",
    "builtins.quit",
    "importlib.",
    "imp.",
    "pkgutil.",
    "zipimport.",
    "runpy.",
    "code.",
    "codeop.",
    "pdb.",
    "bdb.",
    "timeit.",
    "cProfile.",
    "profile.",
    "types.FunctionType",
    "types.LambdaType",
    "types.CodeType",
    # other unpicklers (copyreg._reconstructor, which protocols 0 and 1 use for plain objects, is exempt)
    "pickle.",
    "_pickle.",
    "marshal.",
    "copyreg.",
    "dill.",
    "cloudpickle.",
    # call gadgets
    "functools.partial",
    "functools.partialmethod",
    "functools.reduce",
    "operator.",
    "_operator.",
    # torch's loaders, compilers and native functions beyond the rebuild helpers (those are
    # rebuilt, never looked up here)
    "torch.load",
    "torch.serialization.",
    "torch.storage._load_from_bytes",
    "torch.jit.",
    "torch.ops.",
    "torch._ops.",
    "torch._C.",
    "torch.hub.",
    "torch.package.",
    "torch.utils.cpp_extension.",
)
#: Names under a :data:`DENIED_GLOBALS` entry that ordinary checkpoints carry (as placeholders).
NOT_DENIED: tuple[str, ...] = ("copyreg._reconstructor", "torch._C.Generator")
_TORCH_DTYPES: dict[str, torch.dtype] = {f"torch.{n}": v for n, v in vars(torch).items() if isinstance(v, torch.dtype)}
_TENSOR_REBUILDS = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
)


class Placeholder:
    """An inert stand-in for an object of a global that is not rebuilt (``dotted`` names it).

    ``args``/``kwargs`` hold what the pickle passed to the constructor (or to the function the
    global names), ``state`` what it passed to ``__setstate__``, ``items`` what it appended or
    set as items. Nothing else happens: no method runs code from the file, and a placeholder is
    never pickled again (``__reduce__`` refuses).
    """

    dotted: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the constructor of what it stands for never runs
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.items.extend(list(values) if isinstance(values, (list, tuple)) else [values])

    def __reduce__(self) -> Any:
        raise TypeError(f"a placeholder for {self.dotted} is not pickled")

    def __repr__(self) -> str:
        return f"<placeholder for {self.dotted}>"


@dataclass
class UnpickleReport:
    """What one restricted load met: every global named (-> rebuilt or not) and misused rebuilds."""

    globals: dict[str, bool] = field(default_factory=dict)
    #: rebuild helpers that were handed a placeholder (their result is a placeholder too)
    misused: list[str] = field(default_factory=list)
    _classes: dict[str, type[Placeholder]] = field(default_factory=dict, repr=False)

    def placeholder_class(self, dotted: str) -> type[Placeholder]:
        if dotted not in self._classes:
            name = dotted.rpartition(".")[2] or "Placeholder"
            self._classes[dotted] = type(name, (Placeholder,), {"dotted": dotted, "__module__": __name__})
        return self._classes[dotted]

    def placeholders(self) -> list[str]:
        return [name for name, rebuilt in self.globals.items() if not rebuilt]


def _matches(dotted: str, entries: Iterable[str]) -> bool:
    """``dotted`` equals an entry, or lies under an entry ending in ``.`` (a module tree)."""
    return any(dotted == entry or (entry.endswith(".") and dotted.startswith(entry)) for entry in entries)


def is_denied_global(dotted: str, allowed: Sequence[str] = ()) -> bool:
    """Whether ``dotted`` is in :data:`DENIED_GLOBALS` (not :data:`NOT_DENIED`) and not in ``allowed``.

    ``allowed`` (same ``prefix.`` rule) is the caller's override for a trusted file whose metadata
    happens to name such a global; it changes only whether the file is refused, never what runs.
    """
    return _matches(dotted, DENIED_GLOBALS) and not _matches(dotted, NOT_DENIED) and not _matches(dotted, allowed)


def placeholder_names(obj: Any, *, budget: int = 200_000) -> list[str]:
    """Dotted names of the placeholders (instances or classes) reachable from ``obj``, first seen first.

    Walks dicts, lists, tuples, sets and placeholders' stored arguments, state and items (each
    object once; at most ``budget`` objects), so a large optimizer state costs little.
    """
    names: dict[str, None] = {}
    seen: set[int] = set()
    queue = deque([obj])
    while queue and budget > 0:
        item = queue.popleft()
        if id(item) in seen or isinstance(item, (torch.Tensor, str, bytes, int, float)) or item is None:
            continue
        seen.add(id(item))
        budget -= 1
        if isinstance(item, type):
            if issubclass(item, Placeholder):
                names[item.dotted] = None
        elif isinstance(item, Placeholder):
            names[item.dotted] = None
            queue.extend((item.args, item.kwargs, item.state, item.items))
        elif isinstance(item, dict):
            queue.extend(item.keys())
            queue.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            queue.extend(item)
    return list(names)


def _guarded(
    fn: Callable[..., Any],
    dotted: str,
    report: UnpickleReport,
    check: Callable[[tuple[Any, ...]], bool] = lambda args: True,
) -> Callable[..., Any]:
    """``fn`` that runs only on placeholder-free arguments passing ``check``; else an inert placeholder."""

    def call(*args: Any) -> Any:
        if placeholder_names(args) or not check(args):
            report.misused.append(dotted)
            return report.placeholder_class(dotted)(*args)
        return fn(*args)

    call.rebuilds_tensor = dotted.startswith("torch._utils.")  # type: ignore[attr-defined]
    return call


def _rebuilt_globals(report: UnpickleReport) -> dict[str, Any]:
    """The globals that load as themselves (everything a state dict and plain containers need)."""
    import torch._tensor
    import torch._utils
    import torch.serialization

    table: dict[str, Any] = {
        "collections.OrderedDict": OrderedDict,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch.Tensor": torch.Tensor,
        "torch._tensor.Tensor": torch.Tensor,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch.UntypedStorage": torch.UntypedStorage,
        "torch.storage.UntypedStorage": torch.UntypedStorage,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.bytearray": bytearray,
        "builtins.complex": complex,
        **_TORCH_DTYPES,
    }
    for name in _TENSOR_REBUILDS:
        if hasattr(torch._utils, name):
            table[f"torch._utils.{name}"] = _guarded(getattr(torch._utils, name), f"torch._utils.{name}", report)
    table["_codecs.encode"] = _guarded(
        codecs.encode, "_codecs.encode", report, lambda a: 1 <= len(a) <= 2 and all(isinstance(x, str) for x in a)
    )
    table["torch.serialization._get_layout"] = _guarded(
        torch.serialization._get_layout,
        "torch.serialization._get_layout",
        report,
        lambda a: len(a) == 1 and isinstance(a[0], str),
    )
    table["torch._tensor._rebuild_from_type_v2"] = _guarded(
        torch._tensor._rebuild_from_type_v2,
        "torch._tensor._rebuild_from_type_v2",
        report,
        lambda a: (
            len(a) == 4 and getattr(a[0], "rebuilds_tensor", False) and a[1] in (torch.Tensor, torch.nn.Parameter)
        ),
    )
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` imports nothing (see the module docstring).

    Subclasses made by :func:`restricted_pickle_module` set ``report`` and ``table``.
    """

    report: ClassVar[UnpickleReport]
    table: ClassVar[dict[str, Any]]

    def find_class(self, module: str, name: str) -> Any:
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # protocol 2 writes Python 2 names
        dotted = f"{module}.{name}"
        if dotted in self.table:
            self.report.globals.setdefault(dotted, True)
            return self.table[dotted]
        self.report.globals.setdefault(dotted, False)
        return self.report.placeholder_class(dotted)


def restricted_pickle_module(report: UnpickleReport) -> types.ModuleType:
    """A module usable as ``torch.load(pickle_module=...)``: ``Unpickler`` and ``load`` are restricted."""
    unpickler = type("Unpickler", (RestrictedUnpickler,), {"report": report, "table": _rebuilt_globals(report)})
    module = types.ModuleType(f"{__name__}.restricted")
    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.load = lambda fh, **kwargs: unpickler(fh, **kwargs).load()  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return module


def is_torchscript_archive(path: Path) -> bool:
    """A zip holding ``constants.pkl``: ``torch.load`` hands such files to ``torch.jit.load``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in zf.namelist())


def torch_load_restricted(path: Path, report: UnpickleReport) -> Any:
    """``torch.load`` of ``path`` on the CPU through the restricted unpickler; fills ``report``.

    Zip-format files are memory-mapped. The caller refuses TorchScript archives first
    (:func:`is_torchscript_archive`): torch would load them with ``torch.jit.load``, not a pickle.
    Exceptions propagate; ``report`` then tells what the pickle named up to the failure.
    """
    mmap = zipfile.is_zipfile(path)
    # An explicit pickle_module requires weights_only=False; the module above is the restriction.
    return torch.load(
        path, map_location="cpu", pickle_module=restricted_pickle_module(report), weights_only=False, mmap=mmap
    )
