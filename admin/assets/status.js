// Refreshes the live parts of the page (the server line and every
// section marked data-live) every few seconds by fetching the page again:
// the server renders everything, so without JavaScript the page is the
// same, only still. A failed fetch leaves the page as it was.
(function () {
  "use strict";
  var every = 3000, refreshed = 0;
  function refresh() {
    fetch(window.location.pathname, {cache: "no-store"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var live = document.querySelectorAll("[data-live], #server");
        for (var i = 0; i < live.length; i++) {
          var next = fresh.getElementById(live[i].id);
          if (!next) continue;
          // Keep an open stack trace open across the swap.
          var open = {};
          live[i].querySelectorAll("tr[data-plugin] details[open]").forEach(function (d) {
            open[d.closest("tr").getAttribute("data-plugin")] = true;
          });
          next.querySelectorAll("tr[data-plugin]").forEach(function (tr) {
            var d = tr.querySelector("details");
            if (d && open[tr.getAttribute("data-plugin")]) d.open = true;
          });
          live[i].replaceWith(document.importNode(next, true));
        }
        // How many refreshes were swapped in: for whoever checks the
        // script runs (the browser test).
        document.documentElement.setAttribute("data-refreshed", String(++refreshed));
      })
      .catch(function () {})
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
