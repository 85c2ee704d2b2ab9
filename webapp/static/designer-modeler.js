// The BPMN modeler of the designer (bpmn-js, served from node_modules by /vendor).
// It opens the live BPMN of a process from the address in data-source-url, and "Check and
// deploy" posts the XML to data-deploy-url. The server checks it as `backoffice check` does:
// on problems nothing is deployed, and each problem is listed and shown on its element (a red
// marker and a note beside it). No inline script or style: messages come from data- attributes.
// The modeler is window.designerModeler, for tests and for the curious.
(function () {
  "use strict";

  var root = document.getElementById("designer-canvas");
  if (!root) { return; }
  var saveButton = document.getElementById("designer-save");
  var statusLine = document.getElementById("designer-status");
  var problemBox = document.getElementById("designer-problems");
  var problemList = problemBox.querySelector("ul");
  var liveVersion = document.getElementById("designer-live-version");
  var versions = document.getElementById("designer-versions");
  var csrf = document.getElementById("designer-csrf").value;
  var MARKER = "designer-error";
  var marked = [];
  var baseSha = null;
  var unsaved = false;

  function message(name, values) {
    var text = root.getAttribute("data-msg-" + name) || "";
    Object.keys(values || {}).forEach(function (key) { text = text.split("{" + key + "}").join(String(values[key])); });
    return text;
  }

  function say(text, kind) {
    statusLine.textContent = text;
    statusLine.className = "designer-status" + (kind ? " designer-status-" + kind : "");
  }

  if (typeof window.BpmnJS !== "function") { say(message("failed"), "bad"); return; }

  var modeler = new window.BpmnJS({ container: root });
  window.designerModeler = modeler;

  function clearProblems() {
    var canvas = modeler.get("canvas");
    marked.forEach(function (id) { canvas.removeMarker(id, MARKER); });
    marked = [];
    modeler.get("overlays").remove({ type: MARKER });
    problemList.textContent = "";
    problemBox.hidden = true;
    root.removeAttribute("data-problems");
  }

  function where(problem) {
    var text = problem.file + (problem.line ? ":" + problem.line : "");
    return problem.element_id ? text + " " + problem.element_id : text;
  }

  function showProblems(problems) {
    var registry = modeler.get("elementRegistry");
    var canvas = modeler.get("canvas");
    var overlays = modeler.get("overlays");
    problems.forEach(function (problem) {
      var item = document.createElement("li");
      var element = problem.element_id ? registry.get(problem.element_id) : null;
      var code = document.createElement("code");
      code.textContent = where(problem);
      if (element) {
        // a button: the keyboard reaches it too; it brings the element into view and selects it
        var show = document.createElement("button");
        show.type = "button";
        show.className = "link designer-show";
        show.appendChild(code);
        show.addEventListener("click", function () {
          canvas.scrollToElement(element);
          modeler.get("selection").select(element);
        });
        item.appendChild(show);
      } else {
        item.appendChild(code);
      }
      item.appendChild(document.createTextNode(": " + problem.message));
      if (element) {
        item.setAttribute("data-element-id", problem.element_id);
        canvas.addMarker(element.id, MARKER);
        marked.push(element.id);
        var note = document.createElement("div");
        note.className = "designer-error-note";
        note.setAttribute("data-element-id", element.id);
        note.setAttribute("role", "note");
        note.textContent = (problem.line ? message("line", { line: problem.line }) + ": " : "") + problem.message;
        var position = element.waypoints ? { top: -8, left: 0 } : { bottom: -6, left: 0 };
        overlays.add(element.id, MARKER, { position: position, html: note });
      }
      problemList.appendChild(item);
    });
    problemBox.hidden = problems.length === 0;
    root.setAttribute("data-problems", String(problems.length));
  }

  function refreshVersions() {
    if (!versions) { return; }
    fetch(versions.getAttribute("data-url") || window.location.pathname + "/versions", {
      credentials: "same-origin", headers: { Accept: "text/html" }
    })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var parsed = new DOMParser().parseFromString(html, "text/html");
        versions.replaceChildren.apply(versions, Array.prototype.slice.call(parsed.body.childNodes));
      })
      .catch(function () { /* the table stays as it was */ });
  }

  function answered(response) {
    return response.json().then(function (body) {
      if (response.status === 422 && body.problems) {
        showProblems(body.problems);
        say(body.message, "bad");
      } else if (response.ok) {
        baseSha = body.sha256 || baseSha;
        unsaved = false;
        liveVersion.textContent = "v" + body.version;
        liveVersion.setAttribute("data-version", String(body.version));
        say(message("live", { version: body.version }) + " " + body.message, "ok");
        root.setAttribute("data-deployed", String(body.version));
        refreshVersions();
      } else {
        say(body.message || message("network"), "bad");
      }
    });
  }

  function save() {
    saveButton.disabled = true;
    clearProblems();
    say(message("saving"));
    modeler.saveXML({ format: true })
      .then(function (result) {
        var headers = { "Content-Type": "application/xml", "X-CSRFToken": csrf, Accept: "application/json" };
        if (baseSha) { headers["X-Base-Sha256"] = baseSha; }
        return fetch(root.getAttribute("data-deploy-url"), {
          method: "POST", credentials: "same-origin", headers: headers, body: result.xml
        });
      })
      .then(answered)
      .catch(function () { say(message("network"), "bad"); })
      .then(function () { saveButton.disabled = false; });
  }

  fetch(root.getAttribute("data-source-url"), { credentials: "same-origin", headers: { Accept: "application/xml" } })
    .then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      baseSha = response.headers.get("X-File-Sha256");
      return response.text();
    })
    .then(function (xml) { return modeler.importXML(xml); })
    .then(function () {
      modeler.get("canvas").zoom("fit-viewport");
      saveButton.disabled = false;
      saveButton.addEventListener("click", save);
      modeler.on("commandStack.changed", function () { unsaved = true; });
      window.addEventListener("beforeunload", function (event) {
        if (unsaved) { event.preventDefault(); event.returnValue = ""; }
      });
      root.setAttribute("data-ready", "true");
      say(message("ready"));
    })
    .catch(function () { say(message("failed"), "bad"); });
})();
