# ---- The watch on the processes that run this one: the launcher and the task's own ----
# When the task is stopped, Task Scheduler ends the process it started (conhost.exe or cmd.exe),
# not the programs that process started: each of them watches the processes above it and ends
# when one of them has ended. The part imports what it uses where it uses it: it is pasted into
# files whose other parts import their own.


def ancestors_windows(depth: int) -> "list[int] | None":
    """Process ids of the parent, grandparent... (Toolhelp snapshot), as far as each process's
    entry names its parent: a parent that has ended is named by its child's entry, and has no
    entry of its own. None when Windows gives no snapshot."""
    import ctypes
    import os
    from ctypes import wintypes

    class Entry(ctypes.Structure):
        _fields_ = [
            ("dwSize", wintypes.DWORD),
            ("cntUsage", wintypes.DWORD),
            ("th32ProcessID", wintypes.DWORD),
            ("th32DefaultHeapID", ctypes.c_size_t),
            ("th32ModuleID", wintypes.DWORD),
            ("cntThreads", wintypes.DWORD),
            ("th32ParentProcessID", wintypes.DWORD),
            ("pcPriClassBase", ctypes.c_long),
            ("dwFlags", wintypes.DWORD),
            ("szExeFile", ctypes.c_wchar * 260),
        ]

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    kernel32.CreateToolhelp32Snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
    kernel32.Process32FirstW.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
    kernel32.Process32NextW.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    snapshot = kernel32.CreateToolhelp32Snapshot(0x00000002, 0)  # TH32CS_SNAPPROCESS
    if snapshot in (None, ctypes.c_void_p(-1).value):  # INVALID_HANDLE_VALUE
        return None
    parents = {}
    entry = Entry()
    entry.dwSize = ctypes.sizeof(Entry)
    more = kernel32.Process32FirstW(snapshot, ctypes.byref(entry))
    while more:
        parents[entry.th32ProcessID] = entry.th32ParentProcessID
        more = kernel32.Process32NextW(snapshot, ctypes.byref(entry))
    kernel32.CloseHandle(snapshot)
    chain, pid = [], os.getpid()
    for _ in range(depth):
        pid = parents.get(pid, 0)
        if not pid:
            break
        chain.append(pid)
    return chain


def wait_for_ancestors(depth: int) -> bool:
    """Wait until one of the ``depth`` processes above this one has ended: True then, and at once
    when one had ended before the watch began (a task stopped while this process started), or may
    not be opened (its id was given to another account's process). False at once when Windows
    gives no verdict (no snapshot, or the wait failed), so that what runs keeps running rather
    than ending for a fault of the watch itself."""
    import os
    import sys

    if sys.platform == "win32":
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.GetCurrentProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
        kernel32.WaitForMultipleObjects.restype = wintypes.DWORD  # WAIT_FAILED is 0xFFFFFFFF, not -1
        kernel32.WaitForMultipleObjects.argtypes = [wintypes.DWORD, ctypes.c_void_p, wintypes.BOOL, wintypes.DWORD]
        kernel32.GetProcessTimes.argtypes = [wintypes.HANDLE] + [ctypes.POINTER(wintypes.FILETIME)] * 4

        def created(handle) -> int:
            times = [wintypes.FILETIME() for _ in range(4)]
            if not kernel32.GetProcessTimes(handle, *[ctypes.byref(t) for t in times]):
                return 0
            return (times[0].dwHighDateTime << 32) | times[0].dwLowDateTime

        handles = []
        child = created(kernel32.GetCurrentProcess())
        chain = ancestors_windows(depth)
        if chain is None:
            return False
        if len(chain) < depth:
            return True  # a parent had already ended: it is not in the snapshot
        for pid in chain:
            # SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION
            handle = kernel32.OpenProcess(0x00100000 | 0x1000, False, pid)
            if not handle:
                # No such process any more (87), or one this account may not open: every process
                # within depth is of the task's tree, this account's own, so its id now belongs
                # to a process of another account. Either way the parent has ended.
                return True
            born = created(handle)
            if not born or born > child:
                # The parent ended and its process id was given to a newer process.
                kernel32.CloseHandle(handle)
                return True
            handles.append(handle)
            child = born
        array = (wintypes.HANDLE * len(handles))(*handles)
        if kernel32.WaitForMultipleObjects(len(handles), array, False, 0xFFFFFFFF) >= len(handles):
            return False  # WAIT_FAILED: no verdict
    else:
        import time

        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(1)
    return True
