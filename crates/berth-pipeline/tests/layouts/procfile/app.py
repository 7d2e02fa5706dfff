import http.server, os
port = int(os.environ.get("PORT", "8080"))
http.server.ThreadingHTTPServer(("", port), http.server.SimpleHTTPRequestHandler).serve_forever()
