"""A minimal Django project that runs django-tasks-db for the worker benchmark."""
