// Live progress of a long admin job (portal/progress.py): polls the row's JSON status endpoint
// and redraws its state, summary and steps until the job has finished. No inline script/style.
(function () {
  "use strict";
  var INTERVAL_MS = 2000;
  function draw(box, data) {
    box.querySelector('[data-progress="state"]').textContent = data.state;
    box.querySelector('[data-progress="summary"]').textContent = data.summary;
    var list = box.querySelector('[data-progress="steps"]');
    while (list.firstChild) { list.removeChild(list.firstChild); }
    (data.steps || []).forEach(function (step) {
      var item = document.createElement("li");
      var time = document.createElement("time");
      time.setAttribute("datetime", step.at);
      time.textContent = step.time; // Seoul time with its zone, from the server
      item.appendChild(time);
      item.appendChild(document.createTextNode(" " + step.text));
      list.appendChild(item);
    });
    if (data.finished) {
      box.removeAttribute("data-progress-running");
      var reload = box.querySelector('[data-progress="reload"]');
      if (reload) { reload.parentNode.removeChild(reload); }
    }
  }
  function poll(box) {
    if (!box.hasAttribute("data-progress-running")) { return; }
    fetch(box.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data) { draw(box, data); }
        if (!data || !data.finished) { window.setTimeout(function () { poll(box); }, INTERVAL_MS); }
      })
      .catch(function () { window.setTimeout(function () { poll(box); }, INTERVAL_MS * 2); });
  }
  function start() {
    document.querySelectorAll("[data-progress-url]").forEach(function (box) {
      window.setTimeout(function () { poll(box); }, INTERVAL_MS);
    });
  }
  // The admin loads form media in <head>: wait for the page before looking for the panel.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
