"""moto's server with DynamoDB's writes atomic, as they are on DynamoDB.

moto checks a write's ConditionExpression and then writes in two steps, with no lock between,
and a TransactWriteItems takes a deep copy of every table it touches first and, when it is
cancelled, puts the copies back: two racing conditional writes can both win, and a cancelled
transaction erases every write made to its tables meanwhile by other requests (moto answers
requests on threads). Sluice's slot leases, ledger claims and job counters rely on DynamoDB
doing neither, so the tests run moto through this: every DynamoDB write and transaction runs
under one lock, as if DynamoDB's per-item atomicity were a whole-table one (stricter, never
looser). Reads take no lock. Arguments are moto_server's (-H host -p port).
"""
import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_writes = threading.RLock()


def _serialised(write):
    @functools.wraps(write)
    def locked(*args, **kwargs):
        with _writes:
            return write(*args, **kwargs)

    return locked


for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
