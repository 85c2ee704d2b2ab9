// The live preview of a form in the designer: as the JSON Schema in the textarea changes, the
// server renders it as a task page would (POST to data-preview-url) and the preview shows it,
// or shows why the text is not a form yet. Saving is the page's ordinary form post.
(function () {
  "use strict";

  var editor = document.getElementById("schema");
  var preview = document.getElementById("designer-preview");
  if (!editor || !preview) { return; }
  var csrf = editor.form.querySelector('input[name="csrf_token"]').value;
  var DELAY_MS = 400;
  var timer = null;
  var sent = 0;

  function show(html) {
    var parsed = new DOMParser().parseFromString(html, "text/html");
    preview.replaceChildren.apply(preview, Array.prototype.slice.call(parsed.body.childNodes));
  }

  function refresh() {
    var number = ++sent;
    var body = new URLSearchParams();
    body.set("schema", editor.value);
    preview.setAttribute("aria-busy", "true");
    fetch(editor.getAttribute("data-preview-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, Accept: "text/html" },
      body: body
    })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        if (number !== sent) { return; }  // an older answer arriving late
        show(html);
        preview.setAttribute("data-rendered", String(number));
      })
      .catch(function () { /* offline for a moment: the next keystroke tries again */ })
      .then(function () { if (number === sent) { preview.removeAttribute("aria-busy"); } });
  }

  editor.addEventListener("input", function () {
    if (timer !== null) { clearTimeout(timer); }
    timer = setTimeout(refresh, DELAY_MS);
  });
})();
