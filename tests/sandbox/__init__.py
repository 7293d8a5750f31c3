"""Sandbox tests; a package so that its helper modules are imported as sandbox.fake_site and sandbox.http_helpers."""
