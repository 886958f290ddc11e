/* Two links of the start chain that Windows performs and wine can run exactly.
 *
 *   chain_helper.exe split IN OUT
 *       IN holds one command line (UTF-8). OUT receives the fields that
 *       CommandLineToArgvW splits it into - the function conhost.exe uses on
 *       its own command line - each in UTF-8 followed by a NUL.
 *   chain_helper.exe run IN
 *       IN holds a working directory, a newline, and one command line (UTF-8).
 *       The line is started with CreateProcessW exactly as it is (no quoting
 *       added, lpApplicationName NULL, as a console host starts its client) in
 *       that directory; the helper waits and exits with the child's exit code.
 *
 * Lines are passed through files so that no shell or wine argument handling
 * touches them on the way. */
#include <windows.h>
#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static wchar_t *read_utf8(const wchar_t *path) {
    FILE *f = _wfopen(path, L"rb");
    if (!f) { fwprintf(stderr, L"cannot open %ls\n", path); exit(120); }
    static char bytes[65536];
    size_t n = fread(bytes, 1, sizeof bytes - 1, f);
    fclose(f);
    bytes[n] = 0;
    int wide = MultiByteToWideChar(CP_UTF8, 0, bytes, -1, NULL, 0);
    wchar_t *text = calloc((size_t)wide + 1, sizeof(wchar_t));
    MultiByteToWideChar(CP_UTF8, 0, bytes, -1, text, wide);
    return text;
}

static int split(const wchar_t *in, const wchar_t *out) {
    int argc = 0;
    LPWSTR *argv = CommandLineToArgvW(read_utf8(in), &argc);
    if (!argv) return 121;
    FILE *f = _wfopen(out, L"wb");
    if (!f) return 122;
    for (int i = 0; i < argc; i++) {
        static char utf8[65536];
        int n = WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, utf8, sizeof utf8, NULL, NULL);
        if (n > 0) fwrite(utf8, 1, (size_t)n, f); /* n counts the NUL */
    }
    fclose(f);
    return 0;
}

static int run(const wchar_t *in) {
    wchar_t *text = read_utf8(in);
    wchar_t *newline = wcschr(text, L'\n');
    if (!newline) return 123;
    *newline = 0;
    wchar_t *line = newline + 1;
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    ZeroMemory(&si, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessW(NULL, line, NULL, NULL, TRUE, 0, NULL, text, &si, &pi)) {
        fwprintf(stderr, L"CreateProcessW failed: %lu\n", GetLastError());
        return 124;
    }
    WaitForSingleObject(pi.hProcess, INFINITE);
    DWORD code = 125;
    GetExitCodeProcess(pi.hProcess, &code);
    return (int)code;
}

int wmain(int argc, wchar_t **argv) {
    if (argc == 4 && wcscmp(argv[1], L"split") == 0) return split(argv[2], argv[3]);
    if (argc == 3 && wcscmp(argv[1], L"run") == 0) return run(argv[2]);
    fwprintf(stderr, L"usage: chain_helper split IN OUT | run IN\n");
    return 2;
}
