/* A stand-in python.exe for running the launcher under wine.
 * Appends its own argv (as Windows' CommandLineToArgvW splits the command
 * line it was given) to %STUB_LOG%: each argument in UTF-8 followed by a NUL,
 * the record closed by a newline. Prints a line to stdout and stderr, so the
 * launcher's log redirection can be checked, and exits with %STUB_EXIT%. */
#include <windows.h>
#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    int argc = 0;
    LPWSTR *argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    wchar_t log[4096];
    if (argv && GetEnvironmentVariableW(L"STUB_LOG", log, 4096) > 0) {
        FILE *out = _wfopen(log, L"ab");
        if (out) {
            for (int i = 0; i < argc; i++) {
                static char utf8[65536];
                int n = WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, utf8, sizeof utf8, NULL, NULL);
                if (n > 0) fwrite(utf8, 1, (size_t)n, out); /* n counts the NUL */
            }
            fputc('\n', out);
            fclose(out);
        }
    }
    printf("stub python.exe: started\n");
    fprintf(stderr, "stub python.exe: stderr line\n");
    fflush(stdout);
    const char *code = getenv("STUB_EXIT");
    return code ? atoi(code) : 0;
}
