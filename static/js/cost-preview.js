// Cost before commitment: recomputes the server-rendered estimate (templates/billing/_cost_preview.html)
// as the applicant types. Same arithmetic as billing.services.estimates: half-up to whole won.
(function () {
  "use strict";
  var box = document.getElementById("cost-preview");
  if (!box) { return; }
  var rates = JSON.parse(box.getAttribute("data-rates") || "{}");
  var copay = parseInt(box.getAttribute("data-copay"), 10) || 0;
  var vatPercent = parseInt(box.getAttribute("data-vat"), 10) || 0;
  var ko = (document.documentElement.lang || "ko").indexOf("ko") === 0;
  function won(n) {
    var s = Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return ko ? s + "원" : "₩" + s;
  }
  // Math.round rounds .5 up for positive numbers, as ROUND_HALF_UP does; integers stay exact below 2^53.
  function field(name) { return document.getElementById("id_" + name); }
  function organisation() {
    var el = field("organisation");
    if (el && el.value) { return el.value; }
    var keys = Object.keys(rates);
    return keys.length === 1 ? keys[0] : null;
  }
  function set(name, text) {
    var el = box.querySelector('[data-out="' + name + '"]');
    if (el) { el.textContent = text; }
  }
  function update() {
    var org = organisation();
    var model = field("gpu_model") ? field("gpu_model").value : "";
    var hours = parseInt(field("gpu_hours") ? field("gpu_hours").value : "", 10);
    var rate = org && rates[org] ? rates[org][model] : undefined;
    if (!rate || !(hours > 0)) {
      ["rate", "value", "copay", "vat", "total"].forEach(function (k) { set(k, "–"); });
      return;
    }
    var value = rate * hours;
    var co = Math.round(value * copay / 100);
    var vat = Math.round(co * vatPercent / 100);
    set("rate", won(rate));
    set("value", won(value));
    set("copay", won(co));
    set("vat", won(vat));
    set("total", won(co + vat));
  }
  ["organisation", "gpu_model", "gpu_hours"].forEach(function (name) {
    var el = field(name);
    if (el) { el.addEventListener("input", update); el.addEventListener("change", update); }
  });
  update();
})();
