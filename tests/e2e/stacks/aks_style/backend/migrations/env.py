"""Alembic environment: DATABASE_URL when given (Moorage, a developer), else the chart's POSTGRESQL_*
variables (the hook Job in the cluster), sslmode included."""

import os

from alembic import context
from sqlalchemy import URL, create_engine, pool
from sqlalchemy.engine import make_url


def database_url():
    if os.environ.get("DATABASE_URL"):
        return make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql+psycopg")
    return URL.create("postgresql+psycopg", username=os.environ["POSTGRESQL_USER"],
                      password=os.environ["POSTGRESQL_PASSWORD"], host=os.environ["POSTGRESQL_HOST"],
                      port=int(os.environ.get("POSTGRESQL_PORT", "5432")), database=os.environ["POSTGRESQL_DATABASE"],
                      query={"sslmode": os.environ.get("POSTGRESQL_SSL_MODE", "require")})


if context.is_offline_mode():
    context.configure(url=database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(database_url(), poolclass=pool.NullPool, connect_args={"connect_timeout": 10})
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
