"""dlt's `sql_database` source with one of its fast backends (pyarrow, connectorx), loading one
PostgreSQL table into a DuckDB file: the reference the debug runner's local warehouse is
measured against (benches/throughput.rs, suite `debug`). dlt's defaults otherwise, as a user
would run it.

    python dlt_load.py POSTGRES_URL SCHEMA TABLE BACKEND WORK_DIR
Prints one JSON line: {"rows": N, "seconds": S} (S: pipeline.run alone, extract to load).
"""

import json
import os
import sys
import time

import dlt
import duckdb
from dlt.sources.sql_database import sql_table


def main() -> None:
    url, schema, table, backend, work = sys.argv[1:6]
    os.makedirs(work, exist_ok=True)
    database = os.path.join(work, "dlt.duckdb")
    if os.path.exists(database):
        os.remove(database)
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=os.path.join(work, "pipelines"),
        destination=dlt.destinations.duckdb(database),
        dataset_name="bench",
        progress=None,
    )
    # dlt reflects the table through SQLAlchemy, whose URL names its driver; ConnectorX reads
    # the rows through a connection string of its own.
    credentials = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    backend_kwargs = {"conn": url} if backend == "connectorx" else {}
    source = sql_table(
        credentials=credentials,
        schema=schema,
        table=table,
        backend=backend,
        backend_kwargs=backend_kwargs,
    )
    started = time.monotonic()
    pipeline.run(source, write_disposition="replace")
    seconds = time.monotonic() - started
    with duckdb.connect(database, read_only=True) as connection:
        rows = connection.execute(f'SELECT COUNT(*) FROM bench."{table}"').fetchone()[0]
    print(json.dumps({"rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main()
