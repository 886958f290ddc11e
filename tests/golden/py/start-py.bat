@echo off
rem gen-bundle 0.3.13: keeps the Jupyter notebook server for http://py/ running.
rem install.ps1 puts this file at %ProgramFiles%\gen-bundle\py\start-py.bat
rem and the logon task \gen-bundle\py runs it as the user who logs on.
rem It starts the server, and when the server exits starts it again after a pause that
rem doubles from 5 s up to 300 s (back to 5 s after a run of 60 s or more).
rem Log: %LOCALAPPDATA%\gen-bundle\py\launcher.log (starts, exits, problems and their fixes);
rem the server's own output: server.log there, kept under 1048576 bytes by the server's
rem config (older output: server.1.log). One launcher runs per user: a second one (a second
rem session of the same account, a second start of the task) waits until the first has ended.
rem The server listens on 127.0.0.1 at a port Windows picks and registers with the broker, which
rem holds 127.0.0.13:80 from boot (start-py.config.py says how).
rem With the argument "open" (the Start-menu entry "py notebook") it only runs
rem start-py.guard.py open, which opens http://py/ when the broker is what answers there.
rem Every value below is in double quotes; a doubled %% is one literal percent sign.
rem The next line makes cmd.exe read the rest of this UTF-8 file as UTF-8.
"%SystemRoot%\System32\chcp.com" 65001 >nul
setlocal EnableExtensions DisableDelayedExpansion
if "%~1"=="open" goto open
if not exist "%LOCALAPPDATA%\gen-bundle\py" mkdir "%LOCALAPPDATA%\gen-bundle\py"
rem Run from the install folder (administrators only) so "python -m" finds no stray module.
cd /d "%ProgramFiles%\gen-bundle\py"
if /i not "%CD%"=="%ProgramFiles%\gen-bundle\py" goto no_install_dir
set LOCKED=0
set WAITING=0

:lock
rem cmd.exe opens a redirection target for writing and shares it for reading only: while
rem this launcher runs, launcher.lock stays open and a second launcher cannot open it.
rem The programs it starts inherit the handle; Windows closes it when the launcher and
rem they have ended, however they end (install.ps1 and uninstall.ps1 stop them all).
call :locked 9>"%LOCALAPPDATA%\gen-bundle\py\launcher.lock"
if "%LOCKED%"=="1" exit /b %ERRORLEVEL%
if "%WAITING%"=="0" >>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% another launcher for http://py/ already runs for this user; this one waits until it ends, checking every 60 s
set WAITING=1
set /a PINGS=60+1
"%SystemRoot%\System32\ping.exe" -n %PINGS% 127.0.0.1 >nul
goto lock

:open
"%ProgramFiles%\Python313\python.exe" -I "%ProgramFiles%\gen-bundle\py\start-py.guard.py" open
exit /b %ERRORLEVEL%

:no_install_dir
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% ERROR: cannot change to the install folder "%ProgramFiles%\gen-bundle\py"; the launcher ends. Fix: run install.ps1 again, or uninstall.ps1 to remove the task.
exit /b 3

:locked
set LOCKED=1
if "%WAITING%"=="1" >>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% the other launcher has ended; this one takes over
set /a DELAY=5

:start
if exist "%LOCALAPPDATA%\gen-bundle\py\launcher.log" for %%F in ("%LOCALAPPDATA%\gen-bundle\py\launcher.log") do if %%~zF GEQ 1048576 move /y "%%~fF" "%LOCALAPPDATA%\gen-bundle\py\launcher.log.1" >nul
if exist "%ProgramFiles%\Python313\python.exe" goto python_found
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% ERROR: python.exe not found: "%ProgramFiles%\Python313\python.exe". Fix: install Python with the notebook package there, or make a new bundle with the right --python. Trying again in %DELAY% s.
goto wait

:python_found
if not exist "%USERPROFILE%\Notebooks" mkdir "%USERPROFILE%\Notebooks"
if exist "%LOCALAPPDATA%\gen-bundle\py\server.log" move /y "%LOCALAPPDATA%\gen-bundle\py\server.log" "%LOCALAPPDATA%\gen-bundle\py\server.1.log" >nul
if exist "%LOCALAPPDATA%\gen-bundle\py\stable" del "%LOCALAPPDATA%\gen-bundle\py\stable"
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% starting the notebook server for http://py/
"%ProgramFiles%\Python313\python.exe" -m notebook ^
 --no-browser ^
 "--ServerApp.root_dir=%USERPROFILE%\Notebooks" ^
 "--config=%ProgramFiles%\gen-bundle\py\start-py.config.py" ^
 >"%LOCALAPPDATA%\gen-bundle\py\server.log" 2>&1
set RC=%ERRORLEVEL%
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% the server exited with code %RC%
if "%RC%"=="86" goto stopped
"%SystemRoot%\System32\find.exe" "No module named notebook" "%LOCALAPPDATA%\gen-bundle\py\server.log" >nul 2>&1
if not errorlevel 1 >>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% ERROR: the notebook package is not installed for "%ProgramFiles%\Python313\python.exe". Fix: run that python.exe with -m pip install notebook.
if exist "%LOCALAPPDATA%\gen-bundle\py\stable" set /a DELAY=5

:wait
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% waiting %DELAY% s before the next start
set /a PINGS=DELAY+1
"%SystemRoot%\System32\ping.exe" -n %PINGS% 127.0.0.1 >nul
set /a DELAY=DELAY*2
if %DELAY% GTR 300 set /a DELAY=300
goto start

:stopped
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% the task was stopped; the launcher ends
exit /b 0
