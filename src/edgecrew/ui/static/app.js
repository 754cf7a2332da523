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
  // Tables that scroll sideways say so (app.css draws the hint and the edge shadows).
  function scrollHints(root) {
    (root || document).querySelectorAll(".scroll").forEach(function (el) {
      el.classList.toggle("overflows", el.scrollWidth > el.clientWidth + 1);
      el.classList.toggle("at-end", el.scrollLeft + el.clientWidth >= el.scrollWidth - 1);
      if (!el.dataset.hinted) {
        el.dataset.hinted = "1";
        el.addEventListener("scroll", function () {
          el.classList.toggle("at-end", el.scrollLeft + el.clientWidth >= el.scrollWidth - 1);
        }, { passive: true });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { scrollHints(); });
  document.addEventListener("htmx:afterSwap", function () { scrollHints(); });
  window.addEventListener("resize", function () { scrollHints(); });
  // The menu: a browser that cannot show a closed <details>' content as a bar opens it on wide
  // screens; on a phone, Escape or a tap outside closes it.
  document.addEventListener("DOMContentLoaded", function () {
    var menu = document.getElementById("menu");
    if (!menu) return;
    var wide = window.matchMedia("(min-width: 721px)");
    var bar = !(window.CSS && CSS.supports && CSS.supports("selector(::details-content)"));
    if (bar && wide.matches) { menu.open = true; }
    document.addEventListener("click", function (e) {
      if (menu.open && !wide.matches && !menu.contains(e.target)) { menu.open = false; }
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && menu.open && !wide.matches) { menu.open = false; menu.querySelector("summary").focus(); }
    });
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
  // The waterfall marks the step the inspector shows: at once on a click, and again after each redraw
  // (the live stream redraws the waterfall without knowing which step is open).
  function markSelected(key) {
    if (key === undefined) {
      var shown = document.querySelector("#inspector .inspector[data-step]");
      if (!shown) return;
      key = shown.getAttribute("data-step");
    }
    document.querySelectorAll(".wf-row.kind-step").forEach(function (row) {
      row.classList.toggle("selected", row.getAttribute("data-step") === key);
    });
  }
  // A step opened from the waterfall is shown where the eye is: on a phone the inspector sits below
  // the trace, out of sight, so it is scrolled into view once its content has arrived.
  var openedFromWaterfall = false;
  document.addEventListener("click", function (e) {
    var row = e.target.closest ? e.target.closest(".wf-row[data-step]") : null;
    if (row) { markSelected(row.getAttribute("data-step")); openedFromWaterfall = true; }
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    markSelected();
    var target = e.detail && e.detail.target;
    if (openedFromWaterfall && target && target.id === "inspector") {
      openedFromWaterfall = false;
      var box = target.getBoundingClientRect();
      if (box.top < 0 || box.top > window.innerHeight / 2) { target.scrollIntoView({ block: "start" }); }
    }
  });
  document.addEventListener("htmx:sseMessage", function () { markSelected(); });
  // The run ended: reload once so the result, the steps table and the buttons show the final state.
  document.addEventListener("htmx:sseClose", function (e) {
    if (e.detail && e.detail.type === "message") { window.location.reload(); }
  });
})();
