"""A small TCP program to wrap. Usage: wrapped_server.py MODE PORT [FAMILY]

MODE: echo       serve every connection, echo bytes, until SIGTERM (then write PORT.terminated marker if asked)
      one-shot   serve exactly one connection (echo), then exit 0
      stubborn   like echo but ignores SIGTERM
FAMILY: 4 (default, binds 0.0.0.0) or 6 (binds ::)
Prints its pid, its LD_PRELOAD and the address it got to the file named by $WRAPPED_REPORT, if set.
"""
import os
import signal
import socket
import sys
import threading

mode, port = sys.argv[1], int(sys.argv[2])
family = sys.argv[3] if len(sys.argv) > 3 else "4"
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

if family == "6":
    server = socket.socket(socket.AF_INET6)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("::", port))
else:
    server = socket.socket(socket.AF_INET)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
server.listen(16)

report = os.environ.get("WRAPPED_REPORT")
if report:
    with open(report, "a") as f:
        f.write(f"pid={os.getpid()} preload={os.environ.get('LD_PRELOAD', '')} bound={server.getsockname()[0]}:{server.getsockname()[1]}\n")


def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


if mode == "one-shot":
    conn, _ = server.accept()
    serve(conn)
    sys.exit(0)

while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
