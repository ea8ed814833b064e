"""What the tests share, one module per kind of thing.

``paths`` (the checkout and the virtualenv), ``waiting`` (:func:`~support.waiting.wait_until`,
the one polling loop), ``brokers`` (Mosquitto of a test's own), ``database`` (a throwaway
PostgreSQL database), ``processes`` (``teddy``/``teddy-cloud`` as subprocesses), ``fleet``
(an authenticating broker and bears made at manufacture), ``edges`` (edge brokers bridged to
a core), ``pg_cluster`` (a private PostgreSQL cluster to stop and crash), ``syncing`` (bears
with full outboxes and ingest processes), ``poison`` (payloads ingest must dead-letter),
``identity`` (claims published as some account), ``audio`` (speech made at test time, the
Korean Vosk model, a PulseAudio server), ``embedder`` (the shared sentence embedder),
``frozen_sets`` (scoring the frozen safety sets), ``receivers`` (HTTP and SMTP receivers),
``portal`` and ``browser`` (the parent app, also in Chromium), ``releases`` (a release
server and test releases), ``otp_board`` (a simulated Pi board), ``fake_systemd`` (systemd's
end of ``NOTIFY_SOCKET``).
"""
