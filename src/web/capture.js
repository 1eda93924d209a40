// pocketgate capture page: poll /api/v1/capture/{id} for the bytes written since the last poll
// and show them (time, direction, hex, text), then the detection result. No library.
(function () {
  var box = document.getElementById("capture");
  if (!box) return;
  var id = box.getAttribute("data-id");
  var log = document.getElementById("capture-log");
  var count = 0, from = 0;
  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  function show(c) {
    var row = document.createElement("tr");
    if (c.note) { cell(row, ""); cell(row, ""); cell(row, c.note, "muted"); cell(row, ""); }
    else {
      cell(row, c.at.slice(11, 23)); cell(row, c.dir); cell(row, c.hex, "hex"); cell(row, c.text, "text");
      count += c.len;
    }
    log.appendChild(row);
  }
  function result(j) {
    var out = document.getElementById("capture-result");
    out.textContent = "";
    if (j.error) { var p = document.createElement("p"); p.className = "errors"; p.textContent = "The capture failed: " + j.error; out.appendChild(p); }
    if (j.result) { var pre = document.createElement("pre"); pre.textContent = j.result.summary; out.appendChild(pre); }
    document.getElementById("capture-state").textContent = "finished";
    var stop = box.querySelector("form"); if (stop) stop.hidden = true;
  }
  function poll() {
    fetch("/api/v1/capture/" + id + "?from=" + from, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (j.chunks) j.chunks.forEach(show);
        document.getElementById("capture-count").textContent = count;
        var more = j.next > from;
        from = j.next || from;
        if (j.running || more) setTimeout(poll, more ? 200 : 1000);
        else result(j);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
