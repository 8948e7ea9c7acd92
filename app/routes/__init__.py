"""Thin HTTP routes: parse, call a service, return JSON."""
