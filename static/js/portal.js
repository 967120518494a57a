// Site-wide behaviour, loaded on every page (the CSP allows no inline script):
// - the language menu applies on selection; its submit button stays for browsers without JS;
// - "Copy" buttons put a command (the text of the element named by data-copy) on the clipboard.
(function () {
  "use strict";
  var language = document.querySelector("form.language");
  if (language) {
    var select = language.querySelector("select");
    var button = language.querySelector("button[type=submit]");
    if (button) { button.hidden = true; }
    if (select) {
      select.addEventListener("change", function () { language.submit(); });
    }
  }

  // A table wider than a phone's screen scrolls inside itself (portal.css); make it reachable
  // from the keyboard then, and only then.
  function scrollableTables() {
    Array.prototype.forEach.call(document.querySelectorAll("main table"), function (table) {
      if (table.scrollWidth > table.clientWidth + 1) {
        table.setAttribute("tabindex", "0");
      } else {
        table.removeAttribute("tabindex");
      }
    });
  }
  scrollableTables();
  window.addEventListener("resize", scrollableTables);

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on a non-local host: the old way, through a selected, off-screen text area.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  var status = document.createElement("p");
  status.className = "visually-hidden";
  status.setAttribute("role", "status");
  document.body.appendChild(status);

  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) { return; }
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      copyText(target.textContent).then(function () {
        button.textContent = button.getAttribute("data-copied") || label;
        status.textContent = button.textContent;
        window.setTimeout(function () { button.textContent = label; }, 2000);
      }, function () {
        // Leave the text selected so that the reader can copy it by hand.
        var range = document.createRange();
        range.selectNodeContents(target);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      });
    });
  });
})();
