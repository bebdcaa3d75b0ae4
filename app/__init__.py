"""Wiring: settings, the Faust app, the HTTP API and the command line."""
