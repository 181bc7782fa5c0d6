"""Calls a SourceConnector server as a connector SDK host does and checks what comes back.

It uses the protocol descriptors compiled into the hosts' published package (PyPI
`fivetran-connector-sdk`), not this repository's .proto files, so a field this project numbered
or typed differently from the hosts shows up as a violation here.

    host_check.py HOST:PORT --config FILE [--state JSON] [--form] [--test NAME]...
                  [--expect-rows N] [--expect-task]

Prints one JSON object on stdout: {"violations": [...], "rows": N, "records": N, ...}.
Exit 0: the stream conforms; 1: an RPC failed; 2: the stream broke the protocol.

What a host relies on, and so what is checked:
- every record names a table that Schema declared, and only columns declared for it;
- every value is null or of the declared column type;
- every UPSERT carries every primary-key column, not null;
- a Records message holds at most 100 records;
- every checkpoint's state_json is a JSON object, and no record follows the last checkpoint
  (the host would drop it at the end of the stream);
- the stream ends without a Task unless one is expected.
"""

import argparse
import json
import sys

import grpc
from fivetran_connector_sdk.protos import common_pb2, connector_sdk_pb2, connector_sdk_pb2_grpc

MAX_RECORDS_PER_MESSAGE = 100
MAX_MESSAGE_BYTES = 128 * 1024 * 1024

# The ValueType field each declared DataType's values use.
VALUE_FIELD = {
    common_pb2.BOOLEAN: "bool",
    common_pb2.SHORT: "short",
    common_pb2.INT: "int",
    common_pb2.LONG: "long",
    common_pb2.DECIMAL: "decimal",
    common_pb2.FLOAT: "float",
    common_pb2.DOUBLE: "double",
    common_pb2.NAIVE_DATE: "naive_date",
    common_pb2.NAIVE_DATETIME: "naive_datetime",
    common_pb2.UTC_DATETIME: "utc_datetime",
    common_pb2.BINARY: "binary",
    common_pb2.XML: "xml",
    common_pb2.STRING: "string",
    common_pb2.JSON: "json",
    common_pb2.NAIVE_TIME: "naive_time",
}


class Report:
    def __init__(self):
        self.violations = []
        self.rows = 0
        self.records = 0
        self.truncates = 0
        self.checkpoints = 0
        self.warnings = []
        self.tasks = []
        self.last_state = None
        self.tables = {}

    def violate(self, text):
        # A broken stream tends to break the same way many times; a few examples suffice.
        if len(self.violations) < 50:
            self.violations.append(text)

    def as_json(self):
        return {
            "violations": self.violations,
            "rows": self.rows,
            "records": self.records,
            "truncates": self.truncates,
            "checkpoints": self.checkpoints,
            "warnings": self.warnings,
            "tasks": self.tasks,
            "last_state": self.last_state,
            "tables": self.tables,
        }


def declared_tables(schema_response, report):
    """{(schema, table): {column: Column}} from a SchemaResponse."""
    kind = schema_response.WhichOneof("response")
    if kind == "with_schema":
        pairs = [(s.name, t) for s in schema_response.with_schema.schemas for t in s.tables]
    elif kind == "without_schema":
        pairs = [("", t) for t in schema_response.without_schema.tables]
    else:
        report.violate(f"Schema answered {kind}, not a schema or table list")
        return {}
    tables = {}
    for schema, table in pairs:
        columns = {}
        for column in table.columns:
            if column.name in columns:
                report.violate(f"{schema}.{table.name}: column {column.name!r} declared twice")
            if column.type not in VALUE_FIELD:
                report.violate(f"{schema}.{table.name}.{column.name}: unspecified type")
            columns[column.name] = column
        tables[(schema, table.name)] = columns
    return tables


def selection_of(tables):
    """Every declared table and column selected, as a host's default selection does."""
    by_schema = {}
    for (schema, table), columns in tables.items():
        by_schema.setdefault(schema, []).append(
            connector_sdk_pb2.TableSelection(
                included=True,
                table_name=table,
                columns={name: True for name in columns},
                include_new_columns=True,
            )
        )
    return connector_sdk_pb2.Selection(
        with_schema=connector_sdk_pb2.TablesWithSchema(
            include_new_schemas=True,
            schemas=[
                connector_sdk_pb2.SchemaSelection(
                    included=True, schema_name=schema, tables=tables, include_new_tables=True
                )
                for schema, tables in by_schema.items()
            ],
        )
    )


def check_record(record, tables, report):
    name = f"{record.schema_name}.{record.table_name}"
    columns = tables.get((record.schema_name, record.table_name))
    report.records += 1
    if columns is None:
        report.violate(f"a record for {name}, which Schema did not declare")
        return
    if record.type == common_pb2.TRUNCATE:
        report.truncates += 1
        return
    if record.type != common_pb2.UPSERT:
        report.violate(f"{name}: record type {record.type}, expected UPSERT or TRUNCATE")
    report.rows += 1
    report.tables[name] = report.tables.get(name, 0) + 1
    for column, value in record.data.items():
        declared = columns.get(column)
        if declared is None:
            report.violate(f"{name}: column {column!r} was not declared")
            continue
        field = value.WhichOneof("inner")
        if field is None:
            report.violate(f"{name}.{column}: a value with no field set")
        elif field != "null" and field != VALUE_FIELD.get(declared.type):
            report.violate(
                f"{name}.{column}: a {field} value in a column declared "
                f"{common_pb2.DataType.Name(declared.type)}"
            )
    for column in (c for c in columns.values() if c.primary_key):
        value = record.data.get(column.name)
        if value is None or value.WhichOneof("inner") in (None, "null"):
            report.violate(f"{name}: primary key {column.name!r} missing or null in an UPSERT")


def check_update(stub, configuration, state_json, tables, report):
    request = connector_sdk_pb2.UpdateRequest(
        configuration=configuration, selection=selection_of(tables), state_json=state_json
    )
    records_since_checkpoint = 0
    for response in stub.Update(request):
        kind = response.WhichOneof("operation")
        if kind == "structured_records":
            batch = response.structured_records.structured_records
            if len(batch) > MAX_RECORDS_PER_MESSAGE:
                report.violate(f"a Records message with {len(batch)} records (at most 100)")
            for record in batch:
                check_record(record, tables, report)
            records_since_checkpoint += len(batch)
        elif kind == "structured_record":
            check_record(response.structured_record, tables, report)
            records_since_checkpoint += 1
        elif kind == "truncate":
            truncate = response.truncate
            if (truncate.schema_name, truncate.table_name) not in tables:
                report.violate(f"a truncate of {truncate.schema_name}.{truncate.table_name}, not declared")
            report.truncates += 1
            records_since_checkpoint += 1
        elif kind == "checkpoint":
            report.checkpoints += 1
            try:
                state = json.loads(response.checkpoint.state_json)
            except ValueError as err:
                report.violate(f"a checkpoint whose state_json is not JSON: {err}")
            else:
                if not isinstance(state, dict):
                    report.violate("a checkpoint whose state_json is not a JSON object")
            report.last_state = response.checkpoint.state_json
            records_since_checkpoint = 0
        elif kind == "warning":
            report.warnings.append(response.warning.message)
        elif kind == "task":
            report.tasks.append(response.task.message)
        else:
            report.violate(f"an UpdateResponse with operation {kind}")
    if records_since_checkpoint:
        report.violate(f"{records_since_checkpoint} records after the last checkpoint")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--config", required=True, help="a JSON file of configuration values")
    parser.add_argument("--state", default="{}", help="state_json of the Update")
    parser.add_argument("--form", action="store_true", help="check ConfigurationForm first")
    parser.add_argument("--test", action="append", default=[], help="run this form test first")
    parser.add_argument("--expect-rows", type=int, help="the UPSERTs the Update must send")
    parser.add_argument("--expect-task", action="store_true", help="the Update must end with a Task")
    args = parser.parse_args()

    with open(args.config, encoding="utf-8") as file:
        configuration = json.load(file)
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    report = Report()
    try:
        with grpc.insecure_channel(args.address, options=options) as channel:
            stub = connector_sdk_pb2_grpc.SourceConnectorStub(channel)
            if args.form:
                form = stub.ConfigurationForm(common_pb2.ConfigurationFormRequest())
                if not form.fields:
                    report.violate("ConfigurationForm has no fields")
                names = {test.name for test in form.tests}
                for name in args.test:
                    if name not in names:
                        report.violate(f"ConfigurationForm has no test {name!r}")
            for name in args.test:
                result = stub.Test(common_pb2.TestRequest(name=name, configuration=configuration))
                if result.WhichOneof("response") != "success" or not result.success:
                    report.violate(f"test {name!r} failed: {result.failure}")
            schema = stub.Schema(connector_sdk_pb2.SchemaRequest(configuration=configuration))
            tables = declared_tables(schema, report)
            check_update(stub, configuration, args.state, tables, report)
    except grpc.RpcError as err:
        print(json.dumps({"rpc_error": f"{err.code().name}: {err.details()}", **report.as_json()}))
        return 1
    if args.expect_rows is not None and report.rows != args.expect_rows:
        report.violate(f"{report.rows} rows sent, expected {args.expect_rows}")
    if report.tasks and not args.expect_task:
        report.violate(f"the Update ended with a Task: {report.tasks}")
    if args.expect_task and not report.tasks:
        report.violate("the Update was expected to end with a Task")
    print(json.dumps(report.as_json()))
    return 2 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
