"""Shared test infrastructure (fake services, helpers) for the audiototext test suite."""
