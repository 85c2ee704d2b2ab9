// The instance page's diagram: the BPMN of the instance's own version in the bpmn-js viewer
// (served from /vendor, loaded before this file), each element marked with its state as a
// CSS class (state-completed, state-active, state-waiting, state-failed, state-cancelled;
// colours in instances.css). The data comes from the JSON address in data-diagram-url.
// Without JavaScript the page still says in text where the instance stands.
(function () {
  "use strict";
  var MARKERS = {
    completed: "state-completed",
    active: "state-active",
    waiting: "state-waiting",
    failed: "state-failed",
    cancelled: "state-cancelled"
  };

  function fail(holder, error) {
    holder.setAttribute("data-state", "failed");
    var message = holder.querySelector(".diagram-message");
    if (message) { message.textContent = holder.getAttribute("data-failed-text") || "The diagram could not be shown."; }
    if (window.console && error) { window.console.warn("instance diagram:", error); }
  }

  function mark(viewer, states) {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    var marked = 0;
    Object.keys(states).forEach(function (id) {
      var marker = MARKERS[states[id]];
      if (marker && registry.get(id)) {
        canvas.addMarker(id, marker);
        marked += 1;
      }
    });
    return marked;
  }

  function show(holder, body) {
    var viewer = new window.BpmnJS({ container: holder });
    return viewer.importXML(body.xml).then(function () {
      var canvas = viewer.get("canvas");
      canvas.zoom("fit-viewport", "auto");
      var marked = mark(viewer, body.states || {});
      holder.setAttribute("data-marked", String(marked));
      holder.setAttribute("data-state", "ready");
    });
  }

  function start() {
    var holder = document.getElementById("instance-diagram");
    if (!holder) { return; }
    if (typeof window.BpmnJS !== "function") { fail(holder, "bpmn-js is not loaded"); return; }
    fetch(holder.getAttribute("data-diagram-url"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (body) { return show(holder, body); })
      .catch(function (error) { fail(holder, error); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
