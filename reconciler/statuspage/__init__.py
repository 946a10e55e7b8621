"""The status page at https://<server>/lanai/, for the Open WebUI admin: the proxy checks
the admin's session with Open WebUI (forward auth), then asks the daemon over a Unix
socket. app answers a path (the page, its script and style, status.json, the bench chart)
from lanai's records and the live readings; serve is the socket's HTTP server."""
