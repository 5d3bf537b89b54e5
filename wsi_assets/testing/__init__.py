"""Helpers shared by the tests, the benchmarks and the deploy checks: synthetic inputs, hostile files,
Dagster services in a scratch instance, and readings of what the run queue did.

Part of the package so that benchmarks and deploy scripts import it from the installed package;
nothing else in wsi_assets imports it. It sits beside cli/ at the top of the layers and may import
Dagster (dagster_services, queue_audit).
"""
