// Remember the browser's time zone in the `tz` cookie so the server renders local
// times; reload once when it was missing or changed (never loops: the second load
// finds the cookie equal).
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone || !/^[A-Za-z0-9_+\-\/]+$/.test(zone)) return;
  var match = document.cookie.match(/(?:^|;\s*)tz=([^;]*)/);
  var current = match ? decodeURIComponent(match[1]) : null;
  if (current === zone) return;
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  var stored = document.cookie.match(/(?:^|;\s*)tz=([^;]*)/);
  if (stored && decodeURIComponent(stored[1]) === zone && document.body && document.body.dataset.tzReload !== "no") {
    window.location.reload();
  }
})();
