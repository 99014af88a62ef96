"""pyserial URL handlers that labcim adds: ``serial://PORT?baudrate=N&...``.

pyserial finds the handler of a URL scheme ``X`` as the module ``protocol_X`` of a
package listed in ``serial.protocol_handler_packages``; importing this package lists it,
so :func:`serial.serial_for_url` (and with it :class:`drivers.board.BoardClient`) opens
``serial://`` URLs.
"""

import serial

if __name__ not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append(__name__)
