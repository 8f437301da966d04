/* pbxbridge supervisor board and wallboard: live over server-sent events.
 *
 * The server renders the whole board (every text escaped there) and sends it
 * on every change; this script swaps it in and ticks the times in state and
 * the waits once a second from their data-since stamps (server time, offset
 * by the clock difference each update reports). No caller data is handled
 * here at all.
 */
(function () {
  "use strict";

  var board = document.getElementById("board");
  if (!board) { return; }
  var labelsEl = document.getElementById("sv-labels");
  var L = labelsEl ? JSON.parse(labelsEl.textContent) : {};
  var statusEl = document.getElementById("sv-status");
  var offset = 0; // server time minus browser time, ms

  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var sec = s % 60;
    var mm = h ? (m < 10 ? "0" + m : String(m)) : String(m);
    var ss = sec < 10 ? "0" + sec : String(sec);
    return h ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function tick() {
    var now = Date.now() + offset;
    var nodes = board.querySelectorAll("[data-since]");
    for (var i = 0; i < nodes.length; i++) {
      var since = parseInt(nodes[i].getAttribute("data-since"), 10);
      if (!isNaN(since)) { nodes[i].textContent = duration(now - since); }
    }
  }

  function status(text, cls) {
    if (!statusEl) { return; }
    statusEl.textContent = text;
    statusEl.className = "status " + cls;
  }

  function connect() {
    var source = new EventSource(board.getAttribute("data-events") || "events");
    source.addEventListener("board", function (ev) {
      var data = JSON.parse(ev.data);
      offset = data.now - Date.now();
      // Server-rendered and escaped markup (render.tag); never caller text from here.
      board.innerHTML = data.html;
      board.setAttribute("data-updated", String(data.now));
      tick();
      status(L.sv_live || "Live", "live");
    });
    source.addEventListener("open", function () { status(L.sv_live || "Live", "live"); });
    source.addEventListener("error", function () {
      status(L.sv_reconnecting || "…", "reconnecting");
    });
  }

  connect();
  window.setInterval(tick, 1000);
})();
