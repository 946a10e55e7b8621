"""Join the Docker of this server to a swarm through the Engine API, the join token on stdin.

`docker swarm join` takes the token only in argv (`--token`), where every user of the
server sees it in the process list. The Engine API takes it in a request body, so
bootstrap.sh runs the text of this file on a worker as

    printf "%s\\n" "$TOKEN" | ssh WORKER sudo -n python3 -c "<this file>" MANAGER_ADDR

(with a sudo password, its line comes first: sudo -S reads that line, this reads the next).
`python3 -c`, not `python3 -`: the latter would read all of stdin as the program.

It prints one line and exits 0 when the node joined:
    joined ADVERTISE_ADDR
else one line with the status and message of Docker (the token, were Docker ever to echo
it, replaced by <token>) and exits 1:
    refused STATUS MESSAGE

The advertise address is the source address of this server towards the manager (a UDP
socket connected there: no packet is sent). The standard library only, and no single
quote anywhere in this file: bootstrap.sh puts it between single quotes.
"""
import http.client
import json
import socket
import sys

PORT = 2377
API = "/v1.41/swarm/join"  # Engine API 1.41 = Docker 20.10, the oldest lanai supports


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=90)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(90)
        self.sock.connect(self.socket_path)


def source_address(manager):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((manager, PORT))
        return probe.getsockname()[0]
    finally:
        probe.close()


def join_request(manager, advertise, token):
    return {"ListenAddr": f"0.0.0.0:{PORT}", "AdvertiseAddr": advertise,
            "RemoteAddrs": [f"{manager}:{PORT}"], "JoinToken": token}


def main(argv, stdin, socket_path="/var/run/docker.sock"):
    manager = argv[0]
    token = stdin.readline().strip()
    if not token:
        print("refused 0 no join token on stdin")
        return 1
    advertise = source_address(manager)
    body = json.dumps(join_request(manager, advertise, token))
    connection = UnixConnection(socket_path)
    connection.request("POST", API, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    text = response.read().decode("utf-8", "replace").strip()
    if response.status == 200:
        print("joined " + advertise)
        return 0
    try:
        message = json.loads(text).get("message", text)
    except ValueError:
        message = text
    message = " ".join(str(message).replace(token, "<token>").split())
    print(f"refused {response.status} {message}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdin))
