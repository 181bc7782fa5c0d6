"""dlt's `sql_database` source with its pyarrow backend, loading one PostgreSQL table into a
DuckDB file: the reference the debug runner's local warehouse is measured against
(benches/throughput.rs, suite `debug`). dlt's defaults otherwise, as a user would run it.

    python dlt_load.py POSTGRES_URL SCHEMA TABLE WORK_DIR
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
    url, schema, table, work = sys.argv[1:5]
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
    source = sql_table(credentials=url, schema=schema, table=table, backend="pyarrow")
    started = time.monotonic()
    pipeline.run(source, write_disposition="replace")
    seconds = time.monotonic() - started
    with duckdb.connect(database, read_only=True) as connection:
        rows = connection.execute(f'SELECT COUNT(*) FROM bench."{table}"').fetchone()[0]
    print(json.dumps({"rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main()
