"""Kernel backends, chosen by ``device`` and imported lazily (``import dask_cumbatch`` loads no numba).

The backend contract: a backend is a module in this package that exposes

- the required kernels (:data:`REQUIRED_KERNELS`), with the names, signatures and results of
  :mod:`.cpu`: ``walk_batches``, ``grid_cell``, ``floor_walk``, ``floor_risky``, ``cap_walk``,
  ``count_invalid``, ``starts_to_ids``, ``batch_stats``;
- the optional kernels (:data:`OPTIONAL_KERNELS`: fast paths and exact floor cells), each
  either the CPU's namesake or ``None``: declared absent, the engine then takes its general
  path (the same results). A module may also leave an optional kernel out: absent as well;
- the constants ``I64_MAX``, ``NO_POSITION`` and ``CELL_MAX``;
- ``asarray(numpy_array)``: host -> backend array (identity on the CPU), and
  ``to_numpy(array)``: backend array -> host (identity on the CPU). The engine passes every
  array through them at the kernel call (the seam), so kernels only ever see backend arrays
  and the engine only ever keeps host arrays;
- ``check_available()``: raises a clear error (naming the extra to install) when the backend
  cannot run here; a no-op on the CPU.

The engine never holds the module itself: :func:`backend_for` gives a :class:`Backend`, which
says what the module offers (``backend.offers("greedy_walk")``, or ``backend.greedy_walk is
not None``) and names the kernels' results (:mod:`.results`: ``res.met``, not ``res[6]``).
What the GPU backend lacks of the CPU's, and why, is :data:`GPU_LACKS`.

Tiny inputs (``n_rows`` < ``TINY_ROWS``) in a process that has not loaded numba get
:mod:`.python`: the same kernels (:mod:`.kernels`) run uncompiled, so a 10-row export pays
no numba import or cache load. A process walks at most ``TINY_ROWS`` rows in all that way;
after that (or once numba is loaded by anything) every call gets the compiled :mod:`.cpu`.

A GPU backend (``gpu.py``) additionally sets ``AUTO_MIN_ROWS``: ``device="auto"`` picks it for
partitions of at least that many rows when CuPy and a CUDA device are usable (never the
simulator, which ``simulated()`` reports); ``None``, as ``gpu.py`` sets it after measuring on
an H200, means never (see docs/gpu.md).

>>> backend_for("cpu").I64_MAX == 2**63 - 1
True
"""
from __future__ import annotations

import importlib
import sys
import threading
import weakref
from types import ModuleType

from ...options import OPTIONS, hinted
from .results import NAMED_RESULTS

TINY_ROWS = 20_000  # rows a process walks in plain Python before it loads numba (docs/performance.md)
_tiny = {"left": TINY_ROWS}
_tiny_lock = threading.Lock()

REQUIRED_KERNELS = ("walk_batches", "grid_cell", "floor_walk", "floor_risky", "cap_walk", "count_invalid",
                    "starts_to_ids", "batch_stats")
OPTIONAL_KERNELS = (
    "chain_table", "greedy_walk", "greedy_starts", "greedy_chain", "greedy_sums_ids", "greedy_sums_end",
    "greedy_sums_starts", "valid_bits_total", "flags_to_ids", "floor_ids_quick", "floor_summary_float",
    "floor_summary_int", "floor_exact_walk", "floor_exact_ids", "floor_exact_risky", "floor_exact_sum",
    "floats_integral",
)
CONSTANTS = ("I64_MAX", "NO_POSITION", "CELL_MAX")
SEAM = ("asarray", "to_numpy", "check_available")

_PREFIX_SUMS = "prefix-sum searches are not written for the device: plain greedy walks row by row there"
_EXACT_ON_HOST = ("exact floor cells are decided on the host by the CPU backend's kernels (the same "
                  "code; see modes/floor.py, _exact_kernels)")
# What the CPU backend offers and the GPU backend does not, and why: the engine takes its
# general path there, with the same results. tests/test_engine_backends.py fails on any other
# difference between the two.
GPU_LACKS = {
    "chain_table": "no chain table on the GPU: the scan resolves long partitions by its exact fallback walk",
    "greedy_chain": "no chain table on the GPU (see chain_table)",
    "greedy_walk": "plain greedy runs the general walk_batches (tiled on the device), bitwise the same result",
    "greedy_starts": "the summary's walk is walk_batches' (tiled on the device)",
    "greedy_sums_ids": _PREFIX_SUMS,
    "greedy_sums_end": _PREFIX_SUMS,
    "greedy_sums_starts": _PREFIX_SUMS,
    "valid_bits_total": "the validity test is count_invalid; the greedy/fill summary sums the bits on the host",
    "flags_to_ids": "speculative flags are not kept for the device: its finish walks every row",
    "floor_ids_quick": "floor's finish runs floor_walk (a device scan) and floor_risky checks its total",
    "floor_summary_float": "no one-pass quick summary: the checked path (count_invalid, then floor_risky)",
    "floor_summary_int": "no one-pass quick summary: the checked path (count_invalid, then floor_risky)",
    "floor_exact_walk": _EXACT_ON_HOST,
    "floor_exact_ids": _EXACT_ON_HOST,
    "floor_exact_risky": _EXACT_ON_HOST,
    "floor_exact_sum": _EXACT_ON_HOST,
    "floats_integral": _EXACT_ON_HOST,
}


class _FromModule:
    """A member of :class:`Backend`: the module's attribute of that name, ``None`` where the
    backend declares the kernel absent, and with its result named (:mod:`.results`) where it
    has names.

    Kernels are read ~50 times a partition, so the first read keeps the value in the
    Backend's own ``__dict__`` (a plain attribute from then on: this descriptor has no
    ``__set__``); setting or deleting the module's attribute (a test that patches it) drops
    what its Backends kept (:class:`_WatchedModule`). A backend that is no module object is
    read at each access."""

    def __set_name__(self, owner, name):
        self.name, self.result = name, NAMED_RESULTS.get(name)

    def __get__(self, backend, owner=None):
        if backend is None:
            return self
        member = None if self.name in backend.absent else getattr(backend.module, self.name, None)
        value = _named(member, self.result)
        if isinstance(backend.module, _WatchedModule):
            backend.__dict__[self.name] = value
        return value


class _WatchedModule(ModuleType):
    """A backend module whose attribute writes reach the Backends that kept its members."""

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        _forget(self, name)

    def __delattr__(self, name):
        super().__delattr__(name)
        _forget(self, name)


_WATCHERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> WeakSet of its Backends
_WATCHERS_LOCK = threading.Lock()


def _watch(backend: "Backend") -> None:
    module = backend.module
    if type(module) is ModuleType:
        module.__class__ = _WatchedModule
    if isinstance(module, _WatchedModule):
        with _WATCHERS_LOCK:
            _WATCHERS.setdefault(module, weakref.WeakSet()).add(backend)


def _forget(module, name: str) -> None:
    for backend in list(_WATCHERS.get(module, ())):
        backend.__dict__.pop(name, None)


def _contract_members(cls):
    """Give ``cls`` a :class:`_FromModule` member for every name of the backend contract:
    :data:`REQUIRED_KERNELS`, :data:`OPTIONAL_KERNELS`, :data:`CONSTANTS` and :data:`SEAM`."""
    for name in REQUIRED_KERNELS + OPTIONAL_KERNELS + CONSTANTS + SEAM:
        member = _FromModule()
        member.__set_name__(cls, name)
        setattr(cls, name, member)
    return cls


@_contract_members
class Backend:
    """A backend module as the engine holds it: its kernels, required and optional, with
    every optional kernel it does not offer declared ``None``, and their results named.
    Each name of the contract is a member (the module's attribute, see :class:`_FromModule`).

    Kernels whose results are tuples return the NamedTuples of :mod:`.results` (one wrapper
    call per kernel call, never per row); the others are the module's own functions, as the
    module holds them now (patching the module patches the backend). :func:`backend_for`
    keeps one per module.

    >>> cpu = backend_for("cpu")
    >>> cpu.name, cpu.offers("greedy_walk"), cpu.module.__name__
    ('cpu', True, 'dask_cumbatch.engine.backends.cpu')
    >>> cpu.without("greedy_walk").greedy_walk is None
    True
    """

    def __init__(self, module, absent: tuple = ()):
        missing = [name for name in REQUIRED_KERNELS + CONSTANTS + SEAM if getattr(module, name, None) is None]
        if missing:
            raise TypeError(f"backend {module.__name__} lacks {', '.join(missing)} (see dask_cumbatch.engine.backends)")
        unknown = set(absent) - set(OPTIONAL_KERNELS)
        if unknown:
            raise ValueError(f"only optional kernels can be absent, not {sorted(unknown)}")
        self.module, self.absent = module, frozenset(absent)
        self.name = getattr(module, "__name__", type(module).__name__).rsplit(".", 1)[-1]
        _watch(self)

    def offers(self, kernel: str) -> bool:
        """Whether this backend offers ``kernel`` (required kernels always are offered).

        >>> backend_for("cpu").offers("chain_table")
        True
        """
        if kernel not in _KERNELS:
            raise ValueError(f"{kernel!r} is no kernel of the backend contract")
        return getattr(self, kernel) is not None

    def offered(self) -> frozenset:
        """The optional kernels this backend offers.

        >>> "floor_exact_walk" in backend_for("cpu").offered()
        True
        """
        return frozenset(name for name in OPTIONAL_KERNELS if getattr(self, name) is not None)

    def without(self, *kernels: str) -> "Backend":
        """This backend with the optional ``kernels`` declared absent (for tests: the engine's
        general paths on a backend that offers the fast ones).

        >>> backend_for("cpu").without("chain_table").offers("chain_table")
        False
        """
        return Backend(self.module, self.absent | set(kernels))

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"


_KERNELS = frozenset(REQUIRED_KERNELS + OPTIONAL_KERNELS)


def _named(kernel, result):
    """``kernel`` returning ``result`` (a NamedTuple) instead of its plain tuple; ``kernel``
    itself where its result has no names (or it is absent)."""
    if kernel is None or result is None:
        return kernel
    make = result._make

    def named(*args):
        return make(kernel(*args))

    named.__wrapped__ = kernel
    return named


_BACKENDS: dict = {}  # module -> its Backend
_BACKENDS_LOCK = threading.Lock()


def backend_of(module) -> Backend:
    """The :class:`Backend` of a backend module (built once per module), or ``module`` itself
    where it is a Backend already; any other object with the module's members gets a Backend
    of its own each time.

    >>> from dask_cumbatch.engine.backends import python
    >>> backend_of(python) is backend_of(python) is backend_of(backend_of(python))
    True
    """
    if isinstance(module, Backend):
        return module
    if not isinstance(module, ModuleType):
        return Backend(module)
    backend = _BACKENDS.get(module)
    if backend is None:
        with _BACKENDS_LOCK:
            backend = _BACKENDS.setdefault(module, Backend(module))
    return backend


def host_backend(n_rows: int | None = None) -> Backend:
    """The backend of callers that hold host arrays and name no device (``weight_values``,
    ``batch_stats`` called without a backend; the GPU's exact floor decisions): the CPU's.

    >>> host_backend().name
    'cpu'
    """
    return backend_for("cpu", n_rows)


_DEVICES = OPTIONS["device"].allowed


def backend_for(device: str = "cpu", n_rows: int | None = None) -> Backend:
    """The :class:`Backend` for ``device`` ("cpu", "gpu" or "auto"), its module imported on first use.

    The one place a device is resolved: ``device`` is checked as the ``device`` option checks
    it (``ValueError`` naming the choices). "gpu" is :mod:`.gpu` after its
    ``check_available()``, which raises one line naming the ``[gpu]`` extra when neither CuPy
    with a CUDA device nor numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``) is usable; the
    Dask layer calls this before any data is read. "auto" is the GPU backend when it runs here
    and ``n_rows >= AUTO_MIN_ROWS``; else the CPU.

    ``n_rows`` below ``TINY_ROWS`` may get :mod:`.python` (see the module docstring).

    >>> backend_for("auto", n_rows=10**6).name
    'cpu'
    """
    if device not in _DEVICES:  # the check runs twice a partition: only for what may be wrong
        device = OPTIONS["device"].check(device)
    return backend_of(_module_for(device, n_rows))


def _module_for(device: str, n_rows: int | None):
    if device == "gpu":
        gpu = importlib.import_module(".gpu", __name__)
        try:
            gpu.check_available()
        except RuntimeError as exc:  # the CLI shows the setting as --device gpu
            raise hinted(exc, ("device", "gpu"))
        return gpu
    if device == "auto" and n_rows is not None:
        gpu = _gpu_module()
        threshold = getattr(gpu, "AUTO_MIN_ROWS", None)  # None: auto never picks this backend
        if gpu is not None and threshold is not None and n_rows >= threshold and _on_device(gpu):
            return gpu
    if n_rows is not None and _take_tiny(n_rows):
        return _submodule("python")
    return _submodule("cpu")


_SUBMODULES: dict = {}  # name -> backend module, once its import has finished


def _submodule(name: str) -> ModuleType:
    """This package's backend module ``name``, imported on first use, then kept here
    (``importlib.import_module`` resolves the relative name at every call, and this runs for
    every partition). Not read from ``sys.modules``: a module stands there while another
    thread still runs its import, and ``import_module`` waits for that to finish."""
    module = _SUBMODULES.get(name)
    if module is None:
        module = _SUBMODULES[name] = importlib.import_module(f".{name}", __name__)
    return module


def _take_tiny(n_rows: int) -> bool:
    """Whether ``n_rows`` rows still fit the process's plain-Python budget (numba not loaded)."""
    if "numba" in sys.modules or n_rows >= TINY_ROWS:
        return False
    with _tiny_lock:
        if n_rows > _tiny["left"]:
            _tiny["left"] = 0  # from now on compiled: a long run of small inputs pays numba once
            return False
        _tiny["left"] -= n_rows
        return True


def gpu_available() -> bool:
    """True when CuPy is installed and a CUDA device is visible: ``device="gpu"`` runs on a GPU.

    numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``) is no GPU: under it this is False
    unless a device is there too (see :func:`gpu_path_available`).

    >>> isinstance(gpu_available(), bool)
    True
    """
    gpu = _gpu_module()
    if gpu is None:
        return False
    return _device_visible() if gpu.simulated() else _runs(gpu)


def gpu_path_available() -> bool:
    """True when ``device="gpu"`` can run here: on a CUDA device, or under numba-cuda's
    simulator (``NUMBA_ENABLE_CUDASIM=1`` with the ``gpusim`` extra), which runs the same
    kernels on the CPU, slowly.

    >>> gpu_path_available() >= gpu_available()
    True
    """
    gpu = _gpu_module()
    return gpu is not None and _runs(gpu)


def _gpu_module():
    """The GPU backend module; None when it cannot be imported here."""
    try:
        return importlib.import_module(".gpu", __name__)
    except ImportError:
        return None


def _on_device(backend) -> bool:
    """Whether ``backend`` runs on a real device: "auto" never picks the (slow) simulator."""
    simulated = getattr(backend, "simulated", None)
    return _runs(backend) and not (simulated and simulated())


def _device_visible() -> bool:
    """Whether CuPy is installed and sees a CUDA device (asked of CuPy, not of numba-cuda,
    whose simulator stands in for a device when ``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver
        return False


def _runs(backend) -> bool:
    try:
        backend.check_available()
    except Exception:  # no CuPy, no driver, no device: "auto" falls back to the CPU
        return False
    return True
