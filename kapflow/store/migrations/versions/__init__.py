"""The schema's revisions, oldest first (``0001_initial`` is what ``create_all`` made before Alembic)."""
