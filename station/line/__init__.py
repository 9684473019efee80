"""The line handshake: how the PLC (Modbus TCP) and the MES (OPC UA) trigger the station,
hand it the part context, switch its recipe, hold it with an interlock and read its results.

:mod:`~station.line.handshake` is the transport-free core, :mod:`~station.line.registers`
the one register map, :mod:`~station.line.modbus_server` and :mod:`~station.line.opcua_server`
the two adapters, :mod:`~station.line.service` starts them for a running station.
"""
