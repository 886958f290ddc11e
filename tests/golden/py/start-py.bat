@echo off
rem gen-bundle 0.3.18: starts the launcher of the Jupyter notebook server for http://py/.
rem install.ps1 puts this file at %ProgramFiles%\gen-bundle\py\start-py.bat
rem and the logon task \gen-bundle\py runs it as the user who logs on.
rem It runs start-py.launcher.py with python.exe -I; that file starts the server, starts it
rem again when it exits, and logs to %LOCALAPPDATA%\gen-bundle\py\launcher.log.
rem This file writes to that log only when python.exe or the install folder is missing, and then ends.
rem With the argument "open" (the Start-menu entry "py notebook") it only runs
rem start-py.guard.py open, which opens http://py/ when the broker is what answers there.
rem Every value below is in double quotes; a doubled %% is one literal percent sign.
rem The next line makes cmd.exe read the rest of this UTF-8 file as UTF-8.
"%SystemRoot%\System32\chcp.com" 65001 >nul
setlocal EnableExtensions DisableDelayedExpansion
if "%~1"=="open" goto open
rem The install folder (administrators only): where the launcher and its server run.
cd /d "%ProgramFiles%\gen-bundle\py"
if /i not "%CD%"=="%ProgramFiles%\gen-bundle\py" goto no_install_dir
if not exist "%ProgramFiles%\Python313\python.exe" goto no_python
"%ProgramFiles%\Python313\python.exe" -I "%ProgramFiles%\gen-bundle\py\start-py.launcher.py"
exit /b %ERRORLEVEL%

:open
"%ProgramFiles%\Python313\python.exe" -I "%ProgramFiles%\gen-bundle\py\start-py.guard.py" open
exit /b %ERRORLEVEL%

:no_install_dir
if not exist "%LOCALAPPDATA%\gen-bundle\py" mkdir "%LOCALAPPDATA%\gen-bundle\py"
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% ERROR: cannot change to the install folder "%ProgramFiles%\gen-bundle\py"; the launcher ends. Fix: run install.ps1 again, or uninstall.ps1 to remove the task.
exit /b 3

:no_python
if not exist "%LOCALAPPDATA%\gen-bundle\py" mkdir "%LOCALAPPDATA%\gen-bundle\py"
>>"%LOCALAPPDATA%\gen-bundle\py\launcher.log" echo %DATE% %TIME% ERROR: python.exe not found: "%ProgramFiles%\Python313\python.exe"; the launcher ends. Fix: install Python with the notebook package there ^(or make a new bundle with the right --python^), then run install.ps1 again or log on again: either starts the launcher.
exit /b 2
