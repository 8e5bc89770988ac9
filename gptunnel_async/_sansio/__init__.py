"""Pure code, no I/O: what to send, what an answer means, and what to do next.

Everything here takes the time, the random source and the outcome of each
request as arguments and returns a value; the drivers in ``_transport``,
``_polling`` and ``fleet`` do the sending and the sleeping.
"""
