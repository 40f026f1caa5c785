"""How long any network call waits, in one place: every endpoint gets a clear answer in time.

Why these numbers. A TCP handshake or a DNS answer takes well under a second on any working
network, a slow VPN included, so CONNECT_TIMEOUT and DNS_TIMEOUT leave a wide margin. GCS
and an ordinary HTTP server send the first byte of an answer (a listing page, an object, a
response to an upload) within a few seconds, and a transfer in progress never pauses for
long: READ_TIMEOUT, the longest silence on an open connection, is several times that. An
endpoint that has never answered this process is tried FIRST_CONTACT_TRIES times, so one
that accepts connections and stays silent (a hung proxy, a firewall that drops) is given
up in FIRST_CONTACT_TRIES * READ_TIMEOUT plus the backoff between tries (about 95 s,
under two minutes in all), with an error that is not retried again by the orchestrator. An
endpoint that has answered before keeps the full retry budget while anything it is asked
still answers (slow, not wrong); once nothing has answered for as long as a first contact
is given, it is taken as hung mid-run and given up the same way.
"""

CONNECT_TIMEOUT = 10.0  # seconds to open a TCP connection (and a TLS handshake)
DNS_TIMEOUT = 10.0  # seconds to resolve a host name (wget)
READ_TIMEOUT = 30.0  # seconds of silence on an open connection before it is dropped
FIRST_CONTACT_TRIES = 3  # tries at an endpoint that has not answered yet, before giving up
