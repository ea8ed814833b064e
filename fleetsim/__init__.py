"""A development and benchmark tool: fleets of simulated bears driving the real sync path.

Not part of the bear nor of the cloud: it runs real bears' parts (the encrypted
``ConversationStore`` and :class:`sync.device.DeviceSync`) against a broker and an ingest,
and counts what arrived in the cloud's PostgreSQL. ``teddy-sim`` is its command line.
Bears that only hold a connection open share one network thread per process
(:mod:`fleetsim.idle`), so one machine can hold thousands of them connected.
"""
