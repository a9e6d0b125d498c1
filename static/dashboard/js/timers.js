// Running timers for in-flight exchanges: <span class="timer" data-started="ISO">.
(function () {
  "use strict";
  function format(ms) {
    var s = Math.max(0, ms) / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    return Math.floor(s / 60) + " m " + Math.floor(s % 60) + " s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".timer[data-started]").forEach(function (el) {
      var started = Date.parse(el.dataset.started);
      if (!isNaN(started)) el.textContent = format(now - started) + " …";
    });
  }
  tick();
  setInterval(tick, 100);
})();
