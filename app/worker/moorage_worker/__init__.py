"""The reference worker: consumes item jobs from Redis with RQ and writes results to PostgreSQL.

Why RQ: it is a small, well-kept library (python-rq, actively released, used
widely in production) that needs nothing but the Redis the stack already runs.
It gives us what a worker needs without writing it ourselves: a fork per job
(a crashing or leaking job cannot take the worker down), job timeouts,
retries with back-off, failed-job registries for inspection, heartbeats, and a
warm shutdown on SIGTERM (the current job finishes, then the process exits 0),
which is exactly what a Kubernetes rolling update sends. Celery would bring a
broker abstraction and a far larger footprint for no gain here.
"""
