#!/usr/bin/env python3
"""A smart-HTTP git server for berth-git's tests: `git http-backend` behind Basic auth.

Usage: git_http_server.py PROJECT_ROOT, with BERTH_TEST_GIT_USER and BERTH_TEST_GIT_TOKEN in the
environment (never on the command line, so the token shows in no process's cmdline). Prints the
port it listens on (127.0.0.1), then serves until killed. With BERTH_TEST_GIT_SLOW=SECONDS every
request is delayed, so a test can look at the git processes while they run.
"""

import base64
import http.server
import os
import subprocess
import sys
import time

ROOT = sys.argv[1]
USER = os.environ["BERTH_TEST_GIT_USER"]
TOKEN = os.environ["BERTH_TEST_GIT_TOKEN"]
SLOW = float(os.environ.get("BERTH_TEST_GIT_SLOW", "0"))
EXPECTED = "Basic " + base64.b64encode(("%s:%s" % (USER, TOKEN)).encode()).decode()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_git(self):
        body = self.read_body()
        if SLOW:
            time.sleep(SLOW)
        if self.headers.get("Authorization") != EXPECTED:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="berth-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": USER,
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = handle_git
    do_POST = handle_git


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
