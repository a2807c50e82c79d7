"""Workflow tests of packs (`<pack>/tests/*.yaml`), run by `attune-airflow test`.

`spec` reads and checks test files (no Airflow), `runner` runs their cases through
`dag.test()` with the mocks of runners/mocks.py, `junit` writes the JUnit XML report.
docs/testing-packs.md describes the files and the command.
"""
