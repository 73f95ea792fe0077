"""The malloc tuning is process-wide, so each case runs in a fresh interpreter."""

import os
import platform
import subprocess
import sys

import pytest

# After the tuning a 16 MiB block must come from the heap, not from a private mmap: glibc's
# mallinfo2().hblkhd counts the bytes currently held in mmapped chunks.
CHECK = """
import ctypes
from dhs_core.allocator import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
state = retain_freed_memory(), retain_freed_memory()
block = libc.malloc(16 << 20)
mapped = libc.mallinfo2().hblkhd >= 16 << 20
libc.free(block)
print(*state, "mmapped" if mapped else "heap")
"""


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt/mallinfo2 are glibc's")


def test_large_blocks_come_from_the_heap_once_tuned():
    assert _run({}) == "True True heap"


def test_tuning_can_be_switched_off_and_yields_to_the_users_glibc_settings():
    assert _run({"DHS_MALLOC_TUNING": "0"}) == "False False mmapped"
    assert _run({"MALLOC_TRIM_THRESHOLD_": "1000000"}) == "False False mmapped"
