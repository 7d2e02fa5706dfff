// Runs in the freshly built image (berth.yaml `test:`): post a message, read it back.
const http = require("http");
const { handler } = require("./server");
const server = http.createServer(handler).listen(0, "127.0.0.1", () => {
  const port = server.address().port;
  const post = http.request({ host: "127.0.0.1", port, method: "POST" }, (res) => {
    res.resume();
    res.on("end", () => {
      http.get({ host: "127.0.0.1", port }, (r) => {
        let body = "";
        r.on("data", (c) => (body += c));
        r.on("end", () => {
          server.close();
          if (!body.includes("hello board")) {
            console.error("FAIL: message not listed:", JSON.stringify(body));
            process.exit(1);
          }
          console.log("1 test passed");
        });
      });
    });
  });
  post.end("hello board");
});
