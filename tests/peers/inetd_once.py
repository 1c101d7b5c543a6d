"""Runs an inetd-style program (one that serves the connection on its standard input and output, such as GNU
inetutils' telnetd) for one TCP connection, as `telnetd -debug PORT` did by itself in netkit's telnetd.
Usage: inetd_once.py PORT PROGRAM [ARGS...]

Listens on 127.0.0.1:PORT (under websockify's wrap mode, rebind.so moves that to a free loopback port), accepts
one connection, stops listening, and replaces itself with PROGRAM, the connection as its stdin, stdout and stderr.
When PROGRAM exits, so does this: with --wrap-mode=respawn the proxy starts it again for the next connection.
"""
import os
import socket
import sys

if len(sys.argv) < 3:
    sys.exit(__doc__)
port = int(sys.argv[1])
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(1)
conn, _ = server.accept()
server.close()
for fd in (0, 1, 2):
    os.dup2(conn.fileno(), fd)
conn.close()
os.execvp(sys.argv[2], sys.argv[2:])
