// pocketgate: the little JavaScript the pages need (everything works without it, except the
// phone's clock and the backup upload, which only a script can read).
(function () {
  // Device form: show only the settings of the chosen connection.
  var transport = document.getElementById("transport");
  function showTransport() {
    document.querySelectorAll("fieldset[data-transport]").forEach(function (f) {
      f.hidden = f.getAttribute("data-transport") !== transport.value;
    });
  }
  if (transport) { transport.addEventListener("change", showTransport); showTransport(); }

  // System page: the phone's clock next to the gateway's, and the drift.
  var box = document.getElementById("box-time");
  if (box) {
    var tick = function () {
      var now = Date.now();
      document.getElementById("phone-time").textContent = new Date(now).toISOString().replace(".000", "");
      var drift = Math.round(parseInt(box.getAttribute("data-unix"), 10) - (window.__loaded || now) / 1000);
      document.getElementById("drift").textContent = "(gateway is " + (drift >= 0 ? drift + " s ahead" : -drift + " s behind") + ")";
      var field = document.getElementById("phone-unix");
      if (field) field.value = Math.round(now / 1000);
    };
    window.__loaded = Date.now();
    tick(); setInterval(tick, 1000);
  }

  // System page: restore a backup file (posted as JSON with the CSRF header).
  var restore = document.getElementById("restore");
  if (restore) restore.addEventListener("click", function () {
    var file = document.getElementById("restore-file").files[0];
    var out = document.getElementById("restore-result");
    if (!file) { out.textContent = "choose a file first"; return; }
    file.text().then(function (text) {
      return fetch("/api/v1/system/restore", {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": restore.getAttribute("data-csrf")}, body: text});
    }).then(function (r) { return r.json(); }).then(function (j) {
      out.textContent = j.error ? "refused: " + j.error : "restored; the gateway reloads its config";
    }).catch(function (e) { out.textContent = "failed: " + e; });
  });
})();
