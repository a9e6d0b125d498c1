// Live feed: rows rendered by the server (the same partial as the page) arrive
// over a WebSocket; a row is replaced in place or added on top. Reconnects with
// backoff (0.5 s doubling to 10 s) after the data deployment restarts. The
// status badge says when the feed polls because Redis does not answer.
(function () {
  "use strict";
  var body = document.getElementById("live-rows");
  var status = document.getElementById("live-status");
  if (!body) return;
  var MAX_ROWS = 200;
  var after = parseInt(body.dataset.after || "0", 10) || 0;
  var watch = (body.dataset.watch || "").split(",").filter(Boolean);
  // Staff's ?user= (one person's calls) holds for the feed as for the page.
  var person = new URLSearchParams(location.search).get("user") || "";
  var delay = 500;

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = "badge " + (cls || "");
  }

  // Sent only with Redis configured: pushed by the relay, or polling while
  // Redis does not answer (the feed still delivers every row, just later).
  function showMode(feed) {
    if (feed.mode === "push") {
      setStatus("live", "ok");
    } else {
      setStatus("live updates: polling (" + feed.reason + ")", "warn");
    }
  }

  function inFlightIds() {
    var ids = [];
    body.querySelectorAll('tr[data-state="in_progress"]').forEach(function (tr) {
      ids.push(tr.dataset.id);
    });
    return ids.concat(watch).slice(-500);
  }

  function place(row) {
    var holder = document.createElement("tbody");
    holder.innerHTML = row.html;
    var tr = holder.querySelector("tr");
    if (!tr) return;
    var existing = body.querySelector('tr[data-id="' + row.id + '"]');
    tr.classList.add("fresh");
    if (existing) {
      existing.replaceWith(tr);
    } else {
      var before = null;
      body.querySelectorAll("tr[data-id]").forEach(function (other) {
        if (!before && parseInt(other.dataset.id, 10) < row.id) before = other;
      });
      body.insertBefore(tr, before);
    }
    if (row.id > after) after = row.id;
    var empty = document.getElementById("live-empty");
    if (empty) empty.remove();
    while (body.children.length > MAX_ROWS) body.lastElementChild.remove();
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + body.dataset.socket + "?after=" + after +
      "&watch=" + encodeURIComponent(inFlightIds().join(",")) +
      (person ? "&user=" + encodeURIComponent(person) : "");
    var socket = new WebSocket(url);
    socket.onopen = function () {
      delay = 500;
      watch = [];
      setStatus("live", "ok");
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.feed) showMode(message.feed);
      (message.rows || []).forEach(place);
    };
    socket.onclose = function () {
      setStatus("reconnecting…", "warn");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
