"""Benchmarks of the job worker against django-tasks-db and procrastinate."""
