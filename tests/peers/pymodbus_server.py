"""A Modbus TCP server from pymodbus, an implementation independent of
ours, for `tests/tests/modbus_peers.rs`.

Usage: pymodbus_server.py PORT [FRAMER]

FRAMER is `socket` (Modbus TCP, the default), `rtu` (RTU frames over TCP,
as a serial device server passes them through) or `ascii`.

Serves unit 1 on 127.0.0.1:PORT with, at PROTOCOL addresses (as on the
wire, counted from 0):

    holding 0..=1   230.5 as f32, big-endian words (ABCD): 0x4366, 0x8000
    holding 2       1234
    input 5         0xFFFF (-1 as i16)
    coil 0          true
    discrete 3      true

Every other address of 0..=15 in each table holds 0 / false. Prints
`ready` on stdout once a client can connect.

pymodbus' device context counts block addresses from 1: a block starting
at 1 puts its first value at protocol address 0 (checked against the
pinned version by the test, which reads the values back at the addresses
above through our client and `pymodbus_read.py`).
"""

import asyncio
import logging
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus import FramerType
from pymodbus.server import StartAsyncTcpServer

SIZE = 16
# The block address that lands on protocol address 0.
FIRST = 1


def table(values, default):
    """SIZE values from protocol address 0, `values` mapping address -> value."""
    return ModbusSequentialDataBlock(
        FIRST, [values.get(address, default) for address in range(SIZE)]
    )


def context():
    device = ModbusDeviceContext(
        hr=table({0: 0x4366, 1: 0x8000, 2: 1234}, 0),
        ir=table({5: 0xFFFF}, 0),
        co=table({0: True}, False),
        di=table({3: True}, False),
    )
    return ModbusServerContext(devices={1: device})


async def announce(port):
    """Prints `ready` once the listening socket accepts a connection."""
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        print("ready", flush=True)
        return


async def main(port, framer):
    server = asyncio.create_task(
        StartAsyncTcpServer(
            context(), address=("127.0.0.1", port), framer=FramerType(framer)
        )
    )
    await announce(port)
    await server


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "socket"))
