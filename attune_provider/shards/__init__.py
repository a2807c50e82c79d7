"""Shards (docs/shards.md): which Celery queue, and so which worker pool, runs each workflow.

rendezvous (the assignment, pure), tables (the provider's own tables in Airflow's
metadata database), mapping (versions, heartbeats, pinned runs: the queries), policy (the
cluster policy that applies it when a task instance is created), heartbeat (what a worker
runs beside it to say which shard it serves).
"""
