"""Helpers shared by the tests (never imported from a test module): servers, processes, expected figures."""
