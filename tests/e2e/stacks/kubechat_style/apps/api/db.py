"""The API's database connection, from the chart's DB_* variables."""

import os

import psycopg


def connect():
    return psycopg.connect(host=os.environ["DB_HOST"], port=os.environ.get("DB_PORT", "5432"),
                           dbname=os.environ["DB_NAME"], user=os.environ["DB_USER"],
                           password=os.environ["DB_PASSWORD"], sslmode=os.environ.get("DB_SSL_MODE", "prefer"),
                           connect_timeout=3)
