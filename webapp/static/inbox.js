// Keeps the task counts in the menu and on the inbox fresh without a page reload.
// Every element with a data-count attribute shows one number from /inbox/counts.json:
// "total", "mine", or the name of a role (the address is in <body data-counts-url>).
// The pages work the same without this file.
(function () {
  "use strict";
  var INTERVAL_MS = 20000;
  var timer = null;

  function show(counts) {
    var nodes = document.querySelectorAll("[data-count]");
    for (var i = 0; i < nodes.length; i++) {
      var key = nodes[i].getAttribute("data-count");
      var value = key === "total" || key === "mine" ? counts[key] : (counts.roles || {})[key];
      if (value === undefined) { value = 0; }
      var text = key === "total" && value === 0 ? "" : String(value);
      if (nodes[i].textContent !== text) { nodes[i].textContent = text; }
    }
  }

  function refresh() {
    if (document.hidden) { return; }
    fetch(document.body.getAttribute("data-counts-url") || "/inbox/counts.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) { stop(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (counts) { if (counts) { show(counts); } })
      .catch(function () { /* offline for a moment: try again next time */ });
  }

  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
  }

  function begin() {
    if (!document.querySelector("[data-count]")) { return; }
    refresh();
    timer = setInterval(refresh, INTERVAL_MS);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", begin);
  } else {
    begin();
  }
})();
