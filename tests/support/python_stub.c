/* A stand-in python.exe for running the .bat under wine.
 *
 * Each start appends one record to %STUB_LOG%: the start time as
 * "t=<milliseconds since 1970>", then its own argv as Windows'
 * CommandLineToArgvW splits the command line it was given, each field in
 * UTF-8 followed by a NUL, the record closed by a newline. It prints a line
 * to stdout and one to stderr, so that the launcher's redirection can be
 * checked, then exits.
 *
 * %STUB_PLAN% is what successive starts do, comma-separated: a number is an
 * exit code, "stay" sleeps for two minutes (a server that stays up), "S:N"
 * runs for S seconds and then exits with N. The
 * start count is kept in %STUB_LOG%.count. Without a plan: exit %STUB_EXIT%.
 * %STUB_SAY%, when set, is printed to stderr too (a message of the real server).
 * %PYTHONPYCACHEPREFIX%, when the launcher set it, is printed to stdout, so that the test
 * sees where the real python.exe would put compiled modules.
 *
 * A start whose arguments are -I and a file whose name ends in .guard.py is the
 * .bat running the bundle's guard (python.exe -I <guard> open): it is recorded in %STUB_LOG%.guard
 * instead, prints %STUB_GUARD_SAY% to stdout, exits %STUB_GUARD% (default 0),
 * and uses no step of the plan. */
#include <windows.h>
#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int start_number(const wchar_t *log) {
    wchar_t path[4200];
    int n = 0;
    _snwprintf(path, 4200, L"%ls.count", log);
    FILE *f = _wfopen(path, L"rb");
    if (f) { if (fscanf(f, "%d", &n) != 1) n = 0; fclose(f); }
    f = _wfopen(path, L"wb");
    if (f) { fprintf(f, "%d", n + 1); fclose(f); }
    return n;
}

int main(void) {
    int argc = 0;
    LPWSTR *argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    wchar_t log[4096];
    int number = 0;
    size_t last = argv && argc >= 3 ? wcslen(argv[2]) : 0;
    int guard = argv && argc >= 3 && wcscmp(argv[1], L"-I") == 0 && last >= 9 && wcscmp(argv[2] + last - 9, L".guard.py") == 0;
    if (guard && GetEnvironmentVariableW(L"STUB_LOG", log, 4000) > 0) {
        wcscat(log, L".guard");
        FILE *out = _wfopen(log, L"ab");
        if (out) {
            for (int i = 0; i < argc; i++) {
                static char utf8[65536];
                int n = WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, utf8, sizeof utf8, NULL, NULL);
                if (n > 0) fwrite(utf8, 1, (size_t)n, out);
            }
            fputc('\n', out);
            fclose(out);
        }
    }
    if (guard) {
        char say[1024];
        DWORD said = GetEnvironmentVariableA("STUB_GUARD_SAY", say, sizeof say);
        if (said > 0 && said < sizeof say) printf("%s\n", say);
        const char *code = getenv("STUB_GUARD");
        return code ? atoi(code) : 0;
    }
    if (argv && GetEnvironmentVariableW(L"STUB_LOG", log, 4096) > 0) {
        number = start_number(log);
        FILE *out = _wfopen(log, L"ab");
        if (out) {
            FILETIME ft;
            GetSystemTimeAsFileTime(&ft);
            unsigned long long t = ((unsigned long long)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
            fprintf(out, "t=%llu", (t - 116444736000000000ULL) / 10000ULL);
            fputc(0, out);
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
    char prefix[4096];
    DWORD prefixed = GetEnvironmentVariableA("PYTHONPYCACHEPREFIX", prefix, sizeof prefix);
    if (prefixed > 0 && prefixed < sizeof prefix) printf("stub python.exe: PYTHONPYCACHEPREFIX=%s\n", prefix);
    fprintf(stderr, "stub python.exe: stderr line\n");
    char say[1024];
    DWORD said = GetEnvironmentVariableA("STUB_SAY", say, sizeof say);
    if (said > 0 && said < sizeof say) fprintf(stderr, "%s\n", say);
    fflush(stdout);
    fflush(stderr);
    char plan[1024];
    DWORD got = GetEnvironmentVariableA("STUB_PLAN", plan, sizeof plan);
    if (got > 0 && got < sizeof plan) {
        char *step = strtok(plan, ",");
        for (int i = 0; step && i < number; i++) step = strtok(NULL, ",");
        if (step && strcmp(step, "stay") == 0) { Sleep(120000); return 0; }
        if (step && strchr(step, ':')) { Sleep(1000 * (DWORD)atoi(step)); return atoi(strchr(step, ':') + 1); }
        return step ? atoi(step) : 0;
    }
    const char *code = getenv("STUB_EXIT");
    return code ? atoi(code) : 0;
}
