"""The reference backend: FastAPI + SQLAlchemy (PostgreSQL) + Redis (RQ producer)."""
