import platform
import subprocess
import sys

import pytest

# in a fresh process: how many bytes a 64 MB block adds to malloc's mmapped regions, before and after
PROBE = """
import ctypes
from eiad.memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mapped_by_a_block():
    before = libc.mallinfo2().hblkhd
    block = bytearray(64 * 2**20)
    return libc.mallinfo2().hblkhd - before

print(mapped_by_a_block(), keep_freed_memory(), mapped_by_a_block(), keep_freed_memory())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_large_blocks_come_from_the_reused_heap_after_keep_freed_memory():
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout.split()
    default, applied, kept, again = out
    assert int(default) >= 64 * 2**20  # glibc maps a block this large afresh
    assert applied == again == "True"
    assert int(kept) == 0  # now it comes from the heap, whose freed pages are kept for the next pass
