@echo off
rem gen-bundle 0.1.0: starts the Jupyter notebook server for http://py/
rem install.ps1 puts this file at %ProgramFiles%\gen-bundle\py\start-py.bat
rem and the logon task \gen-bundle\py runs it as the user who logs on.
rem Every value below is in double quotes; a doubled %% is one literal percent sign.
rem The next line makes cmd.exe read the rest of this UTF-8 file as UTF-8.
chcp 65001 >nul
setlocal EnableExtensions DisableDelayedExpansion
rem Run from the install folder (administrators only) so "python -m" finds no stray module.
cd /d "%ProgramFiles%\gen-bundle\py"
if not exist "%LOCALAPPDATA%\gen-bundle\py" mkdir "%LOCALAPPDATA%\gen-bundle\py"
if not exist "%USERPROFILE%\Notebooks" mkdir "%USERPROFILE%\Notebooks"
"%ProgramFiles%\Python313\python.exe" -m notebook ^
 --no-browser ^
 --ServerApp.ip=127.0.0.13 ^
 --ServerApp.port=80 ^
 --ServerApp.port_retries=0 ^
 "--ServerApp.root_dir=%USERPROFILE%\Notebooks" ^
 --ServerApp.local_hostnames=py ^
 --ServerApp.custom_display_url=http://py/ ^
 >>"%LOCALAPPDATA%\gen-bundle\py\server.log" 2>&1
exit /b %ERRORLEVEL%
