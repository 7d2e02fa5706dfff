// A bulletin board in plain Node (no dependencies): GET / lists messages, POST / adds one.
const http = require("http");
const messages = [];
function handler(req, res) {
  if (req.method === "POST") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      messages.push(body.slice(0, 500));
      res.writeHead(201).end("ok\n");
    });
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" }).end(messages.join("\n") + "\n");
}
module.exports = { handler, messages };
if (require.main === module) {
  http.createServer(handler).listen(process.env.PORT || 8080);
}
