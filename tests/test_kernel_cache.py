"""``mapping.kernel_cache``: a changed kernel file empties every fused kernel's Numba cache.

Fake modules stand in for the kernel files (a real flush would cost a recompile); the last
test checks that the real kernel modules' compiled functions are all found.
"""

from types import ModuleType

from mapping import field_blocks, field_kernels, kernel_cache, kernels


class _FakeCache:
    def __init__(self, path):
        self.cache_path = str(path)
        self.flushes = 0

    def flush(self):
        self.flushes += 1


class _FakeKernel:
    """What ``refresh`` reads of a Numba dispatcher: ``py_func`` and ``_cache``."""

    def __init__(self, module_name, cache):
        def py_func():
            return None
        py_func.__module__ = module_name
        self.py_func, self._cache = py_func, cache


def _module(tmp_path, name, text, cache):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    mod = ModuleType(name)
    mod.__file__ = str(path)
    mod.kernel = _FakeKernel(name, cache)
    return mod


def test_a_changed_kernel_file_flushes_every_cache_once_then_nothing(tmp_path):
    caches = [_FakeCache(tmp_path / "cache"), _FakeCache(tmp_path / "cache")]
    mods = [_module(tmp_path, "fake_kernels", "a = 1\n", caches[0]),
            _module(tmp_path, "fake_fields", "b = 2\n", caches[1])]
    foreign = _FakeCache(tmp_path / "cache")
    mods[0].imported = _FakeKernel("elsewhere", foreign)      # defined in another module
    assert kernel_cache.refresh(mods)                          # no stamp yet
    assert [c.flushes for c in caches] == [1, 1] and foreign.flushes == 0
    stamp = tmp_path / "cache" / kernel_cache.STAMP
    assert stamp.read_text().strip() == kernel_cache.sources_digest(mods)
    assert not kernel_cache.refresh(mods)                      # unchanged: the cache stays
    assert [c.flushes for c in caches] == [1, 1]
    (tmp_path / "fake_fields.py").write_text("b = 3\n")       # a callee's file alone
    assert kernel_cache.refresh(mods)
    assert [c.flushes for c in caches] == [2, 2]
    assert stamp.read_text().strip() == kernel_cache.sources_digest(mods)


def test_an_unwritable_cache_directory_is_left_to_numba(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    mod = _module(tmp_path, "fake_kernels", "a = 1\n", _FakeCache(blocker / "cache"))
    assert not kernel_cache.refresh([mod])                     # no exception


def test_the_real_kernel_modules_compiled_functions_are_all_found():
    found = {id(c) for c in kernel_cache._caches(kernel_cache.kernel_modules())}
    for fn in (kernels.analog_conv_interleaved, kernels._conv_sample,
               field_blocks.quantised_block, field_kernels._tap, field_kernels._rows_max):
        assert id(fn._cache) in found, fn.py_func.__name__
    assert not kernel_cache.refresh()                          # stamped at import
