// edgecrew mission control: small progressive enhancements (the pages work without this file).
(function () {
  "use strict";
  function formatTimes(root) {
    (root || document).querySelectorAll("time[data-ts]").forEach(function (el) {
      var ts = parseFloat(el.getAttribute("data-ts"));
      if (!isNaN(ts) && !el.dataset.done) {
        var d = new Date(ts * 1000);
        el.textContent = d.toLocaleString();
        el.setAttribute("datetime", d.toISOString());
        el.dataset.done = "1";
      }
    });
  }
  function copyButtons(root) {
    (root || document).querySelectorAll("button[data-copy]").forEach(function (btn) {
      if (btn.dataset.bound) return;
      btn.dataset.bound = "1";
      btn.addEventListener("click", function () {
        var target = document.getElementById(btn.getAttribute("data-copy"));
        if (!target) return;
        var text = target.textContent;
        var done = function () { btn.textContent = "Copied"; setTimeout(function () { btn.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
        } else { fallback(text); done(); }
      });
    });
  }
  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }
  document.addEventListener("DOMContentLoaded", function () { formatTimes(); copyButtons(); });
  document.addEventListener("htmx:afterSwap", function (e) { formatTimes(e.target); copyButtons(e.target); });
  document.addEventListener("htmx:sseMessage", function () { formatTimes(); });
  // A live log keeps its newest lines in view (an execution's stdout and stderr).
  function tailLogs(root) {
    (root || document).querySelectorAll("pre.log").forEach(function (el) { el.scrollTop = el.scrollHeight; });
  }
  document.addEventListener("DOMContentLoaded", function () { tailLogs(); });
  document.addEventListener("htmx:sseMessage", function (e) {
    if (e.target && e.target.matches && e.target.matches("pre.log")) { tailLogs(e.target.parentNode); }
  });
  // A live run's clock ticks (seconds since it started), so a busy run never looks frozen.
  function tick() {
    document.querySelectorAll(".clock.live[data-since]").forEach(function (el) {
      var since = parseFloat(el.getAttribute("data-since"));
      if (!isNaN(since)) { el.textContent = Math.max(0, Date.now() / 1000 - since).toFixed(0) + " s"; }
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", tick);
  // The run ended: reload once so the result, the steps table and the buttons show the final state.
  document.addEventListener("htmx:sseClose", function (e) {
    if (e.detail && e.detail.type === "message") { window.location.reload(); }
  });
})();
