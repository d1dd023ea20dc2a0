"""Small apps that the runner and CLI tests serve in real subprocesses."""
