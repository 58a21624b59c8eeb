"""Reads a Modbus TCP server with the pymodbus client, an implementation
independent of ours, for `tests/tests/modbus_peers.rs`.

Usage: pymodbus_read.py PORT [FRAMER]

FRAMER as for `pymodbus_server.py` (default `socket`).

Reads unit 1 on 127.0.0.1:PORT, protocol addresses 0..=7 of every table,
and prints one JSON object: {"holding": [...], "input": [...],
"coils": [...], "discrete": [...]}. Exits non-zero if a read fails.
"""

import json
import sys

from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient

COUNT = 8


def main(port, framer):
    client = ModbusTcpClient(
        "127.0.0.1", port=port, timeout=3, framer=FramerType(framer)
    )
    if not client.connect():
        sys.exit(f"cannot connect to 127.0.0.1:{port}")
    reads = {
        "holding": lambda: client.read_holding_registers(0, count=COUNT, device_id=1),
        "input": lambda: client.read_input_registers(0, count=COUNT, device_id=1),
        "coils": lambda: client.read_coils(0, count=COUNT, device_id=1),
        "discrete": lambda: client.read_discrete_inputs(0, count=COUNT, device_id=1),
    }
    result = {}
    for name, read in reads.items():
        reply = read()
        if reply.isError():
            sys.exit(f"reading {name}: {reply}")
        values = reply.bits if name in ("coils", "discrete") else reply.registers
        result[name] = list(values[:COUNT])
    client.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "socket")
