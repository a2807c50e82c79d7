"""Tests of the validator: one module per family of checks, each test with a small pack in tmp_path.

Problems are compared as `LINE:COL: severity: message` of one file, so each test states
exactly where the validator points. Line 1 is the first line of the test's YAML text.
"""
