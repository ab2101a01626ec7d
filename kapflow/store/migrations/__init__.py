"""kapflow's Alembic environment: run by ``kapflow.store.schema``, never through an alembic.ini."""
