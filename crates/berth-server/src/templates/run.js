// Live log of a run: appends events from the server's SSE stream to the log, updates the
// stage list, and reloads the page once when the run ends (for its final state and summary).
// The page starts with the newest lines only; the stage list comes from the server.
(function () {
  var log = document.getElementById("log");
  if (!log || log.dataset.active !== "true") return;
  var run = log.dataset.run;
  var es = new EventSource("/api/runs/" + run + "/stream?after=" + log.dataset.after);
  function text(ev) {
    switch (ev.event) {
      case "step_started": return [ev.step, "info", "── " + ev.step + " started"];
      case "step_finished": return [ev.step, ev.ok ? "info" : "error", "── " + ev.step + (ev.ok ? " finished" : " FAILED") + " in " + (ev.millis / 1000).toFixed(1) + "s: " + ev.message];
      case "message": return [ev.step, ev.level, ev.message];
      case "object_state": return ["deploy", ev.state === "failed" ? "error" : "info", ev.object + " " + ev.state + " " + ev.message];
      case "canary": return ["deploy", ev.state === "paused" || ev.state === "aborted" || ev.state === "failed" || ev.state === "check-failed" ? "warning" : "info", "canary step " + ev.step + "/" + ev.steps + " at " + ev.weight + "%, " + ev.state + ": " + ev.message];
      default: return ["", "info", JSON.stringify(ev)];
    }
  }
  function stage(ev) {
    var list = document.getElementById("stages");
    if (ev.event === "step_started") {
      var li = document.createElement("li");
      li.className = "stage stage-running";
      li.dataset.name = ev.step;
      var b = document.createElement("b");
      b.textContent = ev.step;
      li.appendChild(b);
      li.appendChild(document.createTextNode(" running"));
      var muted = list.querySelector(".muted");
      if (muted) muted.remove();
      list.appendChild(li);
    } else if (ev.event === "step_finished") {
      var open = list.querySelectorAll("li.stage-running");
      for (var i = open.length - 1; i >= 0; i--) {
        if (open[i].dataset.name === ev.step || open[i].querySelector("b").textContent === ev.step) {
          open[i].className = "stage stage-" + (ev.ok ? "ok" : "failed");
          open[i].lastChild.textContent = (ev.ok ? " ok " : " failed ") + (ev.millis / 1000).toFixed(1) + "s";
          break;
        }
      }
    }
  }
  // The canary panel follows its events; a pause (or its end) reloads the page once, for the
  // buttons only the server renders (they carry the session's CSRF token).
  function canary(ev) {
    if (ev.event !== "canary") return;
    var panel = document.getElementById("canary");
    if (!panel || ev.state === "paused" || panel.className.indexOf("canary-paused") >= 0) {
      setTimeout(function () { location.reload(); }, 300);
      return;
    }
    panel.className = "canary canary-" + ev.state;
    document.getElementById("canary-step").textContent = ev.step;
    document.getElementById("canary-weight").textContent = ev.weight;
    document.getElementById("canary-state").textContent = ev.state;
    document.getElementById("canary-message").textContent = ev.message;
  }
  es.addEventListener("event", function (m) {
    var d = JSON.parse(m.data);
    var t = text(d.event);
    var line = document.createElement("span");
    line.className = "line level-" + t[1];
    line.dataset.seq = d.seq;
    var step = document.createElement("span");
    step.className = "step";
    step.textContent = t[0];
    line.appendChild(step);
    line.appendChild(document.createTextNode(" " + t[2] + "\n"));
    log.appendChild(line);
    // A long live run keeps the page bounded: the oldest lines leave (they are a "load
    // earlier" away once the page is reloaded).
    while (log.childElementCount > 2000) {
      var first = log.firstElementChild;
      while (log.firstChild !== first) log.removeChild(log.firstChild);
      log.removeChild(first);
    }
    log.scrollTop = log.scrollHeight;
    stage(d.event);
    canary(d.event);
  });
  es.addEventListener("end", function (m) {
    es.close();
    document.getElementById("run-state").textContent = m.data;
    setTimeout(function () { location.reload(); }, 300);
  });
})();
