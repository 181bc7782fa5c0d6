"""A host as hosts are built: Python grpcio with the connector SDK's own stubs (PyPI
`fivetran-connector-sdk`), default channel options (so it advertises gzip, as grpcio does),
calling Update once and counting what arrives. The benchmark measures the server's CPU and
memory while this runs.

    grpcio_host.py HOST:PORT CONFIG_JSON_FILE

Prints one JSON object: {"upserts": N, "records": N, "checkpoints": N, "seconds": S,
"first_record_s": S}.
"""

import json
import sys
import time

import grpc
from fivetran_connector_sdk.protos import common_pb2, connector_sdk_pb2, connector_sdk_pb2_grpc

MAX_MESSAGE_BYTES = 128 * 1024 * 1024


def main():
    address, config_file = sys.argv[1], sys.argv[2]
    with open(config_file, encoding="utf-8") as f:
        configuration = json.load(f)
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    stub = connector_sdk_pb2_grpc.SourceConnectorStub(channel)
    started = time.monotonic()
    first = None
    upserts = records = checkpoints = 0
    request = connector_sdk_pb2.UpdateRequest(configuration=configuration)
    for response in stub.Update(request):
        which = response.WhichOneof("operation")
        if which in ("records", "structured_records"):
            # The SDK's runtime names both the message field and its list `structured_records`
            # (the partner SDK's files: `records`); on the wire they are the same.
            message = getattr(response, which)
            batch = getattr(message, "structured_records", None)
            if batch is None:
                batch = message.records
            if first is None:
                first = time.monotonic() - started
            records += len(batch)
            upserts += sum(1 for r in batch if r.type == common_pb2.UPSERT)
        elif which == "checkpoint":
            checkpoints += 1
        elif which == "task":
            print(json.dumps({"task": response.task.message}))
            sys.exit(1)
    print(
        json.dumps(
            {
                "upserts": upserts,
                "records": records,
                "checkpoints": checkpoints,
                "seconds": time.monotonic() - started,
                "first_record_s": first,
            }
        )
    )


if __name__ == "__main__":
    main()
