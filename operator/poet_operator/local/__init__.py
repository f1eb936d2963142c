"""Local backend: run monitors as plain processes on this machine (`poetmon run`)."""
